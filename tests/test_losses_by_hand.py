"""Set-criterion losses against values worked out by hand (never by the code under test).

Logits are chosen so that every probability is a simple fraction: sigmoid(0) = 1/2,
sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4, softmax([ln 9, 0, 0]) = (9/11, 1/11, 1/11).
Point-sampled losses read the four pixel centres of 2 x 2 masks (the random sampling is replaced),
where bilinear sampling returns the pixel values exactly.
"""

import math

import pytest
import torch
from conftest import semask_cfg

import semask.modeling.criterion as criterion_module
from semask.modeling.criterion import SetCriterion, dice_loss, focal_loss, sigmoid_ce_loss
from semask.modeling.matcher import HungarianMatcher
from semask.modeling.meta_arch.semask_maskformer import build_criterion
from semask.modeling.semantic_prior import CriterionPriorLoss

LN2, LN3 = math.log(2.0), math.log(3.0)
# (x, y) centres of the pixels of a 2 x 2 grid, in point_sample's [0, 1] coordinates
CENTRES = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


def _bce(p: float, y: int) -> float:
    return -math.log(p) if y else -math.log(1 - p)


def _focal(p: float, y: int) -> float:
    """Sigmoid focal loss (alpha 0.25, gamma 2) of one element with probability ``p``."""
    return 0.25 * (1 - p) ** 2 * _bce(p, 1) if y else 0.75 * p**2 * _bce(p, 0)


# Two masks at two points: logits (0, ln 3) and (-ln 3, 0), labels (1, 0) and (0, 1).
POINT_LOGITS = torch.tensor([[0.0, LN3], [-LN3, 0.0]])
POINT_LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
POINT_PROBS = [[0.5, 0.75], [0.25, 0.5]]


def test_sigmoid_ce_point_loss_by_hand():
    # mask 0: (ln 2 + ln 4) / 2; mask 1: (ln 4/3 + ln 2) / 2; summed, divided by num_masks 4
    expected = (1.5 * LN2 + (math.log(4 / 3) + LN2) / 2) / 4
    assert sigmoid_ce_loss(POINT_LOGITS, POINT_LABELS, 4.0).item() == pytest.approx(expected)


def test_dice_point_loss_by_hand():
    # mask 0: 1 - (2 * 1/2 + 1) / (5/4 + 1 + 1) = 5/13; mask 1: 1 - (1 + 1) / (3/4 + 1 + 1) = 3/11
    expected = (5 / 13 + 3 / 11) / 2
    assert dice_loss(POINT_LOGITS, POINT_LABELS, 2.0).item() == pytest.approx(expected)


def test_focal_point_loss_by_hand():
    per_mask = [
        sum(_focal(p, int(y)) for p, y in zip(probs, labels)) / 2
        for probs, labels in zip(POINT_PROBS, POINT_LABELS.tolist())
    ]
    expected = sum(per_mask) / 2
    assert focal_loss(POINT_LOGITS, POINT_LABELS, 2.0).item() == pytest.approx(expected, rel=1e-6)


def _three_queries():
    """[1, 3, 3] logits: query 0 (0, ln 2, 0), query 1 (0, 0, 0), query 2 (0, 0, ln 2)."""
    return torch.tensor([[[0.0, LN2, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, LN2]]])


def _weighted_ce_with_unmatched(eos: float) -> float:
    """Query 0 matched to class 1 (p = 1/2, weight 1); queries 1 and 2 unmatched, so labelled
    "no object" (p = 1/3 and 1/2, weight ``eos``): the weighted mean of -log p."""
    return (LN2 + eos * LN3 + eos * LN2) / (1 + 2 * eos)


def _two_class_criterion(eos_coef: float) -> SetCriterion:
    return SetCriterion(
        num_classes=2,
        matcher=HungarianMatcher(num_points=4),
        weight_dict={},
        eos_coef=eos_coef,
        num_points=4,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )


@pytest.mark.parametrize("eos_coef", [0.1, 0.5])
def test_classification_loss_weights_unmatched_queries_by_no_object_weight(eos_coef):
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 2, 2, dtype=torch.bool)}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    loss = _two_class_criterion(eos_coef).loss_labels(
        {"pred_logits": _three_queries()}, targets, indices
    )
    assert loss.item() == pytest.approx(_weighted_ce_with_unmatched(eos_coef), rel=1e-6)
    assert _weighted_ce_with_unmatched(eos_coef) != pytest.approx(_weighted_ce_with_unmatched(1.0))


def test_default_config_weights_no_object_by_one_tenth():
    cfg = semask_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 2, 2, dtype=torch.bool)}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    loss = build_criterion(cfg).loss_labels({"pred_logits": _three_queries()}, targets, indices)
    assert loss.item() == pytest.approx(_weighted_ce_with_unmatched(0.1), rel=1e-6)


def test_prior_loss_averages_over_labelled_pixels_of_the_whole_batch():
    # a 2 x 2 prior sum resized 4x (align_corners=True) keeps its logits at the 8 x 8 corners
    # image 0: one labelled corner, logits (ln 3, 0), class 0: -log 3/4
    # image 1: three labelled corners with logits (0, 0) -> ln 2 each; the rest ignored
    prior = torch.zeros(2, 2, 2, 2)
    prior[0, 0, 0, 0] = LN3
    prior[0, :, 1, :] = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])  # ignored: huge losses
    prior[1, 0, 1, 1] = 50.0  # ignored corner of image 1
    sem_seg = torch.full((2, 8, 8), 255)
    sem_seg[0, 0, 0] = 0
    sem_seg[1, 0, 0], sem_seg[1, 0, 7], sem_seg[1, 7, 0] = 1, 0, 1
    targets = [{"sem_seg": s} for s in sem_seg]
    expected = (math.log(4 / 3) + 3 * LN2) / 4  # not the mean of the per-image means
    loss = CriterionPriorLoss(255)({"prior_sum": prior}, targets)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def _planted_outputs(swap: bool):
    """One image, two queries, 2 x 2 masks: query a has a confident class (p = 9/11) and a mask
    at probability 1/2, query b an unsure class (1/3) and a mask at 3/4. ``swap`` exchanges them."""
    logits = torch.tensor([[[math.log(9.0), 0.0, 0.0], [0.0, 0.0, 0.0]]])
    masks = torch.stack([torch.zeros(2, 2), torch.full((2, 2), LN3)])[None]
    if swap:
        logits, masks = logits.flip(1), masks.flip(1)
    return {"pred_logits": logits, "pred_masks": masks}


@pytest.fixture
def centre_points(monkeypatch):
    """Point sampling of the matcher and of the mask losses reads the four pixel centres."""

    def fake_rand(*size, **kwargs):
        assert tuple(size) == (1, 4, 2), size
        return CENTRES[None].clone()

    def fake_uncertain(coarse_logits, *args):
        return CENTRES[None].expand(len(coarse_logits), -1, -1).clone()

    monkeypatch.setattr(torch, "rand", fake_rand)
    monkeypatch.setattr(
        criterion_module, "get_uncertain_point_coords_with_randomness", fake_uncertain
    )


def test_criterion_forward_by_hand(centre_points):
    """Class 2, mask 5, dice 5, prior 0.4; one target of class 0 covering the image.

    Matching costs: confident-class query 2 * -9/11 + 5 * ln 2 + 5 * 2/7 = 3.26; mask query
    2 * -1/3 + 5 * ln 4/3 + 5 * 1/8 = 1.40, so the mask query is matched, in the final output and
    (with the queries exchanged) in the auxiliary output alike.
    """
    weights = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0, "loss_cate": 0.4}
    weights.update({f"{k}_0": v for k, v in weights.items() if k != "loss_cate"})
    crit = SetCriterion(
        num_classes=2,
        matcher=HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=4),
        weight_dict=weights,
        eos_coef=0.1,
        num_points=4,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        extra_losses={"loss_cate": CriterionPriorLoss(255)},
    )
    outputs = _planted_outputs(swap=False)
    outputs["aux_outputs"] = [_planted_outputs(swap=True)]
    # a 1 x 2 prior sum resized 4x (align_corners=True) to 4 x 8 keeps its logits at the
    # corners: (ln 3, 0) at the labelled top-left pixel (class 0), (0, 0) at the top-right (1)
    outputs["prior_sum"] = torch.zeros(1, 2, 1, 2)
    outputs["prior_sum"][0, 0, 0, 0] = LN3
    sem_seg = torch.full((4, 8), 255)
    sem_seg[0, 0], sem_seg[0, 7] = 0, 1
    targets = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 2, 2), "sem_seg": sem_seg}]

    losses = crit(outputs, targets)

    # matched query: class 0 at p = 1/3 (weight 1); other: "no object" at p = 1/11 (weight 0.1)
    ce = (LN3 + 0.1 * math.log(11.0)) / 1.1
    mask = math.log(4 / 3)  # BCE of p = 3/4 against 1 at every point, one mask
    dice = 1 - (2 * 3 + 1) / (3 + 4 + 1)  # probabilities sum to 3 over 4 points of target 1
    cate = (math.log(4 / 3) + LN2) / 2
    expected = {"loss_ce": 2 * ce, "loss_mask": 5 * mask, "loss_dice": 5 * dice}
    expected.update({f"{k}_0": v for k, v in expected.items()})
    expected["loss_cate"] = 0.4 * cate
    assert {k: v.item() for k, v in losses.items()} == pytest.approx(expected, rel=1e-6)


def test_focal_mode_upsamples_masks_to_the_target_size():
    """MaskFormer's mask loss on a 1 x 1 mask logit ln 3 upsampled to a 2 x 2 diagonal target."""
    crit = SetCriterion(
        num_classes=2,
        matcher=HungarianMatcher(num_points=4, mask_loss="focal"),
        weight_dict={},
        eos_coef=0.1,
        num_points=4,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )
    outputs = {"pred_masks": torch.full((1, 1, 1, 1), LN3)}
    targets = [{"labels": torch.tensor([0]), "masks": torch.eye(2, dtype=torch.bool)[None]}]
    losses = crit.loss_masks(outputs, targets, [(torch.tensor([0]), torch.tensor([0]))], 1.0)
    focal = (2 * _focal(0.75, 1) + 2 * _focal(0.75, 0)) / 4
    dice = 1 - (2 * 1.5 + 1) / (3 + 2 + 1)
    assert losses["loss_mask"].item() == pytest.approx(focal, rel=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(dice, rel=1e-6)
