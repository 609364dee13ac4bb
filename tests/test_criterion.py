"""Set criterion and semantic-prior loss: keys, weights, hand-computed values, empty targets."""

import math

import pytest
import torch
from conftest import semask_cfg
from detectron2.projects.point_rend.point_features import point_sample

from semask.data.targets import sem_seg_to_masks
from semask.modeling.criterion import (
    SetCriterion,
    ignore_aware_cross_entropy,
    matched_target_points,
)
from semask.modeling.matcher import HungarianMatcher
from semask.modeling.meta_arch.semask_maskformer import build_criterion
from semask.modeling.semantic_prior import CriterionPriorLoss

NUM_CLASSES = 4


def _criterion(weight_dict, num_points=200, mask_loss="sigmoid_ce"):
    return SetCriterion(
        num_classes=NUM_CLASSES,
        matcher=HungarianMatcher(
            cost_class=2.0,
            cost_mask=5.0,
            cost_dice=5.0,
            num_points=num_points,
            mask_loss=mask_loss,
        ),
        weight_dict=weight_dict,
        eos_coef=0.1,
        num_points=num_points,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        extra_losses={"loss_cate": CriterionPriorLoss(255)},
    )


def _outputs(batch=2, queries=6, size=(24, 32), num_aux=2, seed=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {
            "pred_logits": torch.randn(batch, queries, NUM_CLASSES + 1, generator=g),
            "pred_masks": torch.randn(batch, queries, size[0] // 4, size[1] // 4, generator=g),
        }

    out = one()
    out["aux_outputs"] = [one() for _ in range(num_aux)]
    out["prior_sum"] = torch.randn(batch, NUM_CLASSES, size[0] // 4, size[1] // 4, generator=g)
    for t in [out, *out["aux_outputs"]]:
        for v in t.values():
            if isinstance(v, torch.Tensor):
                v.requires_grad_(True)
    return out


def _targets(sem_segs):
    targets = []
    for sem_seg in sem_segs:
        labels, masks = sem_seg_to_masks(sem_seg)
        targets.append({"labels": labels, "masks": masks, "sem_seg": sem_seg})
    return targets


def _sem_segs(batch=2, size=(24, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    sem = torch.randint(0, NUM_CLASSES, (batch, *size), generator=g)
    sem[:, :4] = 255
    return list(sem)


def _weights():
    base = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    weights = dict(base)
    for i in range(2):
        weights.update({f"{k}_{i}": v for k, v in base.items()})
    weights["loss_cate"] = 0.4
    return weights


def test_config_weight_dict_matches_official(reference_dir):
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / "micro_msdeform_config.yaml"))
    weights = build_criterion(cfg).weight_dict
    expected = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0, "loss_cate": 0.4}
    for i in range(cfg.MODEL.MASK_FORMER.DEC_LAYERS - 1):
        expected.update({f"loss_ce_{i}": 2.0, f"loss_mask_{i}": 5.0, f"loss_dice_{i}": 5.0})
    assert weights == expected
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = False
    cfg.MODEL.MASK_FORMER.CATE_WEIGHT = 0.0
    assert build_criterion(cfg).weight_dict == {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}


def test_empty_weight_buffer():
    crit = _criterion(_weights())
    assert crit.empty_weight.tolist() == pytest.approx([1.0] * NUM_CLASSES + [0.1])
    assert "empty_weight" in crit.state_dict()


def test_without_deep_supervision_aux_outputs_are_ignored():
    weights = {k: v for k, v in _weights().items() if k[-1] not in "01"}
    crit = _criterion(weights)
    crit.deep_supervision = False
    assert set(crit(_outputs(), _targets(_sem_segs()))) == set(weights)


def test_missing_weight_is_an_error():
    weights = _weights()
    del weights["loss_dice_1"]
    with pytest.raises(KeyError, match="loss_dice_1"):
        _criterion(weights)(_outputs(), _targets(_sem_segs()))


def test_prior_loss_hand_computed():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[-1.0, 3.0]]]])  # [1, 3, 1, 2]
    labels = torch.tensor([[[1, 255]]])
    # pixel 0: logits (2, 0, -1), class 1 -> -log(e^0 / (e^2 + e^0 + e^-1)); pixel 1 ignored
    expected = -math.log(1.0 / (math.exp(2) + 1.0 + math.exp(-1)))
    assert ignore_aware_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    labels = torch.tensor([[[1, 2]]])
    second = -math.log(math.exp(3) / (1.0 + math.e + math.exp(3)))
    value = ignore_aware_cross_entropy(logits, labels).item()
    assert value == pytest.approx((expected + second) / 2, rel=1e-6)


def test_prior_loss_ignores_ignored_pixels():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 4, 6, 6, generator=g), torch.randint(
        0, 4, (2, 6, 6), generator=g
    )
    changed = labels.clone()
    changed[:, :3] = 255
    reference = ignore_aware_cross_entropy(logits[..., 3:, :], labels[:, 3:])
    torch.testing.assert_close(ignore_aware_cross_entropy(logits, changed), reference)


def test_prior_loss_rejects_size_mismatch():
    with pytest.raises(ValueError, match="sem_pred size"):
        ignore_aware_cross_entropy(torch.zeros(1, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))


def test_all_ignore_image_gives_finite_losses():
    sem_segs = [torch.full((24, 32), 255, dtype=torch.int64)] * 2
    outputs = _outputs()
    losses = _criterion(_weights())(outputs, _targets(sem_segs))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_cate"].item() == 0.0 and losses["loss_mask"].item() == 0.0
    assert losses["loss_ce"].item() > 0  # every query must predict "no object"
    sum(losses.values()).backward()
    assert outputs["prior_sum"].grad is not None and outputs["pred_masks"].grad is not None


@pytest.mark.parametrize("mask_loss", ["sigmoid_ce", "focal"])
def test_perfect_prediction_has_lower_loss(mask_loss):
    sem_seg = torch.zeros(32, 32, dtype=torch.int64)  # 4 x 4 aligned blocks: exact at stride 4
    sem_seg[:, 16:] = 1
    sem_seg[20:, 8:] = 3
    sem_seg[:4] = 255
    targets = _targets([sem_seg])
    good = _outputs(batch=1, size=(32, 32), num_aux=0)
    with torch.no_grad():
        good["pred_logits"].fill_(-10.0)
        good["pred_logits"][0, :, NUM_CLASSES] = 10.0
        good["pred_masks"].fill_(-10.0)
        small = targets[0]["masks"][:, ::4, ::4]
        for q, (label, mask) in enumerate(zip(targets[0]["labels"], small)):
            good["pred_logits"][0, q] = -10.0
            good["pred_logits"][0, q, label] = 10.0
            good["pred_masks"][0, q] = torch.where(mask, 10.0, -10.0)
    bad = _outputs(batch=1, size=(32, 32), num_aux=0)
    weights = {"loss_ce": 1.0, "loss_mask": 1.0, "loss_dice": 1.0, "loss_cate": 1.0}
    good_losses = _criterion(weights, 1000, mask_loss)(good, targets)
    bad_losses = _criterion(weights, 1000, mask_loss)(bad, targets)
    assert good_losses["loss_ce"] < 0.01 < bad_losses["loss_ce"]
    assert good_losses["loss_dice"] < bad_losses["loss_dice"]
    assert good_losses["loss_mask"] < bad_losses["loss_mask"]


def test_matched_target_points_equal_sampling_the_gathered_masks():
    """Image 0 has 4 targets, 2 matched (in another order); image 1 has none; image 2 has 3,
    all matched."""
    gen = torch.Generator().manual_seed(0)
    masks = [(torch.rand(n, 9, 11, generator=gen) > 0.5).float() for n in (4, 0, 3)]
    targets = [{"masks": m} for m in masks]
    empty = torch.empty(0, dtype=torch.int64)
    indices = [
        (torch.tensor([5, 1]), torch.tensor([3, 0])),
        (empty, empty),
        (torch.tensor([0, 2, 7]), torch.tensor([1, 2, 0])),
    ]
    coords = torch.rand(5, 13, 2, generator=gen)
    gathered = torch.cat([m[j] for m, (_, j) in zip(masks, indices)])[:, None]
    expected = point_sample(gathered, coords, align_corners=False)[:, 0]
    actual = matched_target_points(targets, indices, coords)
    assert actual.shape == (5, 13)
    assert torch.equal(actual, expected)
