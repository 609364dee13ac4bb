"""The semantic prior module: naming and splitting of stage priors, the parameter-free semantic
decoder, the prior loss of both families, and the prior outputs at inference."""

import math

import pytest
import torch
from conftest import semask_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head
from torch import nn

import semask  # noqa: F401
from semask.modeling.meta_arch.semask_maskformer import build_criterion
from semask.modeling.semantic_prior import (
    STAGE_NAMES,
    CriterionPriorLoss,
    aggregate_priors,
    declares_priors,
    is_prior,
    prior_feature_names,
    prior_loss,
    prior_name,
    prior_outputs,
    prior_sum,
    read_prior_outputs,
    semantic_map,
    split_features,
)

K = 3


def independent_sum(priors):
    """docs/DESIGN.md section 2 with nn.Upsample modules, written separately from the function."""
    up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    size = priors[0].shape[-2:]
    total = priors[0].clone()
    for steps, prior in enumerate(priors[1:], start=1):
        for _ in range(steps):
            prior = up2(prior)
        total += nn.Upsample(size=size, mode="bilinear", align_corners=True)(prior)
    return nn.Upsample(size=(4 * size[0], 4 * size[1]), mode="bilinear", align_corners=True)(total)


def priors_of(height, width, batch=2, classes=3):
    gen = torch.Generator().manual_seed(0)
    sizes = [(height, width)]
    for _ in range(3):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return [torch.randn(batch, classes, h, w, generator=gen) for h, w in sizes]


@pytest.mark.parametrize("size", [(8, 12), (15, 17), (1, 1)])
def test_matches_the_documented_formula(size):
    priors = priors_of(*size)
    out = aggregate_priors(priors)
    assert out.shape == (2, 3, 4 * size[0], 4 * size[1])
    torch.testing.assert_close(out, independent_sum(priors))


@pytest.mark.parametrize("size", [(8, 12), (15, 17)])
def test_gradients_match_the_documented_formula(size):
    priors = [p.double().requires_grad_() for p in priors_of(*size)]
    grad = torch.randn(aggregate_priors(priors).shape, dtype=torch.float64)
    actual = torch.autograd.grad(aggregate_priors(priors), priors, grad)
    expected = torch.autograd.grad(independent_sum(priors), priors, grad)
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want)


def test_odd_sizes_upsample_stepwise_then_resize():
    """A 2x3 map reaches 16x24 after three x2 steps; that differs from one direct resize."""
    priors = [torch.zeros(1, 1, 15, 17)] * 3 + [torch.randn(1, 1, 2, 3)]
    out = aggregate_priors(priors)
    direct = nn.functional.interpolate(
        priors[3], size=(60, 68), mode="bilinear", align_corners=True
    )
    assert not torch.allclose(out, direct)
    torch.testing.assert_close(out, independent_sum(priors))


def test_single_prior_is_only_upsampled():
    prior = torch.randn(1, 2, 5, 6)
    expected = nn.functional.interpolate(prior, size=(20, 24), mode="bilinear", align_corners=True)
    torch.testing.assert_close(aggregate_priors([prior]), expected)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="no prior maps"):
        aggregate_priors([])
    with pytest.raises(ValueError, match="prior 1 has shape"):
        aggregate_priors([torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 4, 4)])


def test_reproduces_the_official_semantic_head(reference_dir):
    outputs = torch.load(reference_dir / "micro_msdeform_outputs.pt")
    priors = [outputs["cls_outputs"][f"res{i}"] for i in range(2, 6)]
    expected = outputs["sem_head_pred"]
    actual = aggregate_priors(priors)
    assert ((actual - expected).norm() / expected.norm()).item() <= 1e-4


def _shapes():
    """A backbone's output shapes, listed coarse to fine so that sorting matters."""
    shapes = {f"prior_res{i}": ShapeSpec(channels=K, stride=2**i) for i in (5, 3, 2, 4)}
    shapes.update(
        {"res2": ShapeSpec(channels=8, stride=4), "res5": ShapeSpec(channels=64, stride=32)}
    )
    return shapes


def test_prior_names():
    assert STAGE_NAMES == ("res2", "res3", "res4", "res5")
    assert [prior_name(s) for s in STAGE_NAMES] == [f"prior_res{i}" for i in range(2, 6)]
    assert is_prior("prior_res3") and not is_prior("res3") and not is_prior("res3_prior")


def test_prior_feature_names_finest_first():
    assert prior_feature_names(_shapes()) == [f"prior_res{i}" for i in range(2, 6)]
    assert declares_priors(_shapes())
    plain = {k: v for k, v in _shapes().items() if not k.startswith("prior_")}
    assert prior_feature_names(plain) == [] and not declares_priors(plain)


def test_split_features_keys_priors_by_stage():
    features = {"res2": 1, "prior_res2": 2, "res5": 3, "prior_res5": 4}
    stages, priors = split_features(features)
    assert stages == {"res2": 1, "res5": 3}
    assert priors == {"res2": 2, "res5": 4}


def test_semantic_map_aggregates_the_named_priors_and_names_missing_ones():
    priors = priors_of(8, 12)
    features = {prior_name(s): p for s, p in zip(STAGE_NAMES, priors)}
    names = [prior_name(s) for s in STAGE_NAMES]
    torch.testing.assert_close(semantic_map(features, names), independent_sum(priors))
    del features["prior_res4"]
    with pytest.raises(KeyError, match=r"prior maps \['prior_res4'\] missing"):
        semantic_map(features, names)


def _hand_case(ignore_value):
    """A 2 x 2 prior sum, resized 4x (align_corners=True) to 8 x 8: its corners keep their
    logits. Labelled: the top-left corner, logits (ln 3, 0), class 0 (CE ln 4/3), and the
    top-right one, logits (0, 0) (CE ln 2); every other pixel (the bottom row with huge losses)
    is ignored. The mean over labelled pixels is (ln 4/3 + ln 2) / 2."""
    prior = torch.zeros(1, 2, 2, 2)
    prior[0, 0, 0, 0] = math.log(3.0)
    prior[0, :, 1, :] = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    sem_seg = torch.full((1, 8, 8), ignore_value)
    sem_seg[0, 0, 0], sem_seg[0, 0, 7] = 0, 1
    return prior, sem_seg, (math.log(4 / 3) + math.log(2.0)) / 2


@pytest.mark.parametrize("ignore_value", [255, 254])
def test_prior_loss_by_hand(ignore_value):
    prior, sem_seg, expected = _hand_case(ignore_value)
    assert prior_loss(prior, sem_seg, ignore_value).item() == pytest.approx(expected, rel=1e-6)


def test_prior_loss_is_the_cross_entropy_of_the_semantic_decoder_output():
    """The resize inside the loss equals the decoder's: same value and gradient as the
    cross-entropy of :func:`aggregate_priors`; a label size that is not 4x is named."""
    gen = torch.Generator().manual_seed(0)
    priors = [torch.randn(2, K, 12 // 2**i, 20 // 2**i, generator=gen) for i in range(3)]
    priors = [p.requires_grad_(True) for p in priors]
    sem_seg = torch.randint(0, K, (2, 48, 80), generator=gen)
    sem_seg[0, 5:9] = 255
    expected = nn.functional.cross_entropy(aggregate_priors(priors), sem_seg, ignore_index=255)
    expected_grads = torch.autograd.grad(expected, priors)
    features = {f"p{i}": p for i, p in enumerate(priors)}
    value = prior_loss(prior_sum(features, ["p0", "p1", "p2"]), sem_seg, 255)
    torch.testing.assert_close(value, expected)
    for grad, reference in zip(torch.autograd.grad(value, priors), expected_grads):
        torch.testing.assert_close(grad, reference)
    with pytest.raises(ValueError, match=r"output size \(48, 80\).*label size \(48, 81\)"):
        prior_loss(priors[0], torch.zeros(2, 48, 81, dtype=torch.int64), 255)


def test_criterion_prior_loss_is_prior_loss_with_the_configured_ignore_value():
    """The Mask2Former/MaskFormer criterion trains the prior with the same function as the FPN
    head, ignoring MODEL.SEM_SEG_HEAD.IGNORE_VALUE (the value padding uses)."""
    prior, sem_seg, expected = _hand_case(254)
    cfg = semask_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 2, 254
    loss = build_criterion(cfg).extra_losses["loss_cate"]
    value = loss({"prior_sum": prior}, [{"sem_seg": sem_seg[0]}])
    assert value.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(KeyError, match="loss_cate needs the head's 'prior_sum'.*CATE_WEIGHT 0"):
        CriterionPriorLoss(255)({}, [{"sem_seg": sem_seg[0]}])


def test_fpn_head_prior_loss_is_prior_loss_of_the_aggregated_priors():
    """SeMask-FPN trains its prior with the criterion's function and the configured ignore value."""
    cfg = semask_cfg()
    head_cfg = cfg.MODEL.SEM_SEG_HEAD
    head_cfg.NAME, head_cfg.NUM_CLASSES, head_cfg.IGNORE_VALUE = "SeMaskFPNHead", K, 254
    head_cfg.IN_FEATURES, head_cfg.CONVS_DIM, head_cfg.NORM = list(STAGE_NAMES), 4, ""
    cfg.MODEL.SEMASK.CATE_WEIGHT = 0.5
    shapes = {s: ShapeSpec(channels=4, stride=2**i) for i, s in enumerate(STAGE_NAMES, start=2)}
    shapes.update(
        {prior_name(s): ShapeSpec(channels=K, stride=v.stride) for s, v in shapes.items()}
    )
    head = build_sem_seg_head(cfg, shapes).train()
    gen = torch.Generator().manual_seed(0)
    features = {
        name: torch.randn(1, shape.channels, 64 // shape.stride, 64 // shape.stride, generator=gen)
        for name, shape in shapes.items()
    }
    targets = torch.randint(0, K, (1, 64, 64), generator=gen)
    targets[0, :10] = 254
    losses = head(features, targets)[1]
    prior = prior_sum(features, [f"prior_res{i}" for i in range(2, 6)])
    torch.testing.assert_close(losses["loss_cate"], 0.5 * prior_loss(prior, targets, 254))


def test_prior_outputs_crop_to_image_region():
    features = {
        "res2": torch.randn(2, 8, 16, 20),
        "prior_res2": torch.randn(2, K, 16, 20),
        "prior_res5": torch.randn(2, K, 2, 3),
    }
    shapes = {"prior_res2": ShapeSpec(channels=K, stride=4), "prior_res5": ShapeSpec(K, stride=32)}
    sem_prior = torch.randn(K, 64, 80)
    out = prior_outputs(sem_prior, features, shapes, 1, (50, 70), 100, 140)
    assert set(out["stage_priors"]) == {"res2", "res5"}
    torch.testing.assert_close(out["stage_priors"]["res2"], features["prior_res2"][1, :, :13, :18])
    assert out["stage_priors"]["res5"].shape == (K, 2, 3)
    assert out["sem_prior"].shape == (K, 100, 140)
    expected = nn.functional.interpolate(
        sem_prior[None, :, :50, :70], size=(100, 140), mode="bilinear", align_corners=False
    )[0]
    torch.testing.assert_close(out["sem_prior"], expected)


def test_read_prior_outputs_in_stage_order_as_cpu_float():
    output = {
        "sem_prior": torch.ones(K, 4, 4, dtype=torch.float64),
        "stage_priors": {"res5": torch.zeros(K, 1, 1), "res2": torch.ones(K, 1, 1).half()},
    }
    sem_prior, stages = read_prior_outputs(output, "M")
    assert sem_prior.dtype == torch.float32 and list(stages) == ["res2", "res5"]
    assert all(v.dtype == torch.float32 for v in stages.values())
    with pytest.raises(KeyError, match="M returned no 'sem_prior'/'stage_priors'"):
        read_prior_outputs({"sem_seg": torch.zeros(1)}, "M")
