"""SeMask-FPN: the Semantic-FPN head on the four stages, its prior loss and its outputs."""

import pytest
import torch
import torch.nn.functional as F
from conftest import semask_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model, build_sem_seg_head
from torch import nn

from semask.modeling.criterion import ignore_aware_cross_entropy
from semask.modeling.heads import SeMaskFPNHead
from semask.modeling.semantic_prior import aggregate_priors

K = 5


def tiny_fpn_cfg(backbone: str = "D2SeMaskSwinTransformer"):
    cfg = semask_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "SeMaskFPN"
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.SWIN.EMBED_DIM = 16
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 2, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 1, 2, 2]
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.0
    cfg.MODEL.SEM_SEG_HEAD.NAME = "SeMaskFPNHead"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = K
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
    cfg.MODEL.SEM_SEG_HEAD.NORM = "GN"
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    return cfg


def _fake_shapes(priors=True):
    shapes = {f"res{i + 2}": ShapeSpec(channels=8 * 2**i, stride=4 * 2**i) for i in range(4)}
    if priors:
        shapes.update(
            {f"prior_res{i + 2}": ShapeSpec(channels=K, stride=4 * 2**i) for i in range(4)}
        )
    return shapes


def _fake_features(shapes, size=(64, 96), seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(2, s.channels, size[0] // s.stride, size[1] // s.stride, generator=g)
        for k, s in shapes.items()
    }


def _head(priors=True, dropout=0.1):
    return SeMaskFPNHead(
        {k: v for k, v in _fake_shapes(priors).items() if not k.startswith("prior_")},
        prior_features=[k for k in _fake_shapes(priors) if k.startswith("prior_")],
        dropout=dropout,
        cate_weight=0.4,
        num_classes=K,
        conv_dims=32,
        common_stride=4,
        norm="GN",
        ignore_value=255,
    )


def test_head_structure_follows_semantic_fpn():
    head = _head()
    convs = [sum(isinstance(m, nn.Conv2d) for m in h.modules()) for h in head.scale_heads]
    ups = [sum(isinstance(m, nn.Upsample) for m in h.modules()) for h in head.scale_heads]
    assert convs == [1, 1, 2, 3] and ups == [0, 1, 2, 3]
    assert head.predictor.in_channels == 32 and head.predictor.out_channels == K
    assert head.dropout.p == 0.1


def test_head_inference_and_losses_on_fake_features():
    head = _head().eval()
    features = _fake_features(_fake_shapes())
    logits, losses = head(features)
    assert logits.shape == (2, K, 64, 96) and losses == {}
    head.train()
    targets = torch.randint(0, K, (2, 64, 96))
    targets[:, :10] = 255
    torch.manual_seed(0)
    _, losses = head(features, targets)
    assert set(losses) == {"loss_sem_seg", "loss_cate"}
    prior = aggregate_priors([features[f"prior_res{i}"] for i in range(2, 6)])
    expected = 0.4 * ignore_aware_cross_entropy(prior, targets)
    torch.testing.assert_close(losses["loss_cate"], expected)
    torch.manual_seed(0)
    x = head.layers(features)
    main = F.cross_entropy(
        F.interpolate(x, scale_factor=4, mode="bilinear"), targets, ignore_index=255
    )
    torch.testing.assert_close(losses["loss_sem_seg"], main)


@pytest.mark.parametrize("weight", [0.4, 1.5])
@pytest.mark.parametrize("key", ["MODEL.SEMASK.CATE_WEIGHT", "MODEL.MASK_FORMER.CATE_WEIGHT"])
def test_cate_weight_key_weighs_the_prior_loss(key, weight):
    """MODEL.SEMASK.CATE_WEIGHT (or its published spelling) weighs loss_cate in SeMask-FPN as it
    does in Mask2Former."""
    cfg = tiny_fpn_cfg()
    cfg.merge_from_list([key, str(weight)])
    shapes = _fake_shapes()
    head = build_sem_seg_head(cfg, shapes).train()
    features = _fake_features(shapes)
    targets = torch.randint(0, K, (2, 64, 96))
    _, losses = head(features, targets)
    prior = aggregate_priors([features[f"prior_res{i}"] for i in range(2, 6)])
    expected = weight * ignore_aware_cross_entropy(prior, targets)
    torch.testing.assert_close(losses["loss_cate"], expected)


def test_head_without_priors():
    head = _head(priors=False).train()
    features = _fake_features(_fake_shapes(priors=False))
    _, losses = head(features, torch.randint(0, K, (2, 64, 96)))
    assert set(losses) == {"loss_sem_seg"}
    with pytest.raises(ValueError, match="prior"):
        head.prior_map(features)
    with pytest.raises(ValueError, match="targets"):
        head(features)


def test_all_ignore_targets_give_zero_finite_losses():
    head = _head().train()
    features = _fake_features(_fake_shapes())
    _, losses = head(features, torch.full((2, 64, 96), 255))
    assert all(v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()
    assert head.predictor.weight.grad is not None


def test_model_end_to_end_with_priors():
    """Shapes, and values: the outputs at a requested size are the bilinear resize of those at
    the input size; without dropout (GroupNorm head) the training losses equal the cross-entropy
    of the inference logits and 0.4 x that of the returned prior on the same labels (an input
    size divisible by 32, so that training's padding changes nothing)."""
    cfg = tiny_fpn_cfg()
    cfg.MODEL.MASK_FORMER.TEST.RETURN_PRIOR = True
    cfg.MODEL.SEM_SEG_HEAD.DROPOUT = 0.0
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert type(model).__name__ == "SeMaskFPN"
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 32, "width": 48}])
        (full,) = model([{"image": image}])
    assert out["sem_seg"].shape == (K, 32, 48) and out["sem_prior"].shape == (K, 32, 48)
    sizes = {k: tuple(v.shape) for k, v in out["stage_priors"].items()}
    assert sizes == {"res2": (K, 16, 24), "res3": (K, 8, 12), "res4": (K, 4, 6), "res5": (K, 2, 3)}
    for key in ("sem_seg", "sem_prior"):
        resized = F.interpolate(full[key][None], size=(32, 48), mode="bilinear")[0]
        torch.testing.assert_close(out[key], resized)
    label = torch.randint(0, K, (64, 96), generator=g)
    label[:8] = 255
    losses = model.train()([{"image": image, "sem_seg": label}])
    assert set(losses) == {"loss_sem_seg", "loss_cate"}
    ce = F.cross_entropy(full["sem_seg"][None], label[None], ignore_index=255)
    torch.testing.assert_close(losses["loss_sem_seg"], ce)
    prior_ce = ignore_aware_cross_entropy(full["sem_prior"][None], label[None])
    torch.testing.assert_close(losses["loss_cate"], 0.4 * prior_ce)


def test_plain_swin_baseline_has_no_prior_loss():
    model = build_model(tiny_fpn_cfg("D2SwinTransformer")).train()
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    losses = model([{"image": image, "sem_seg": torch.randint(0, K, (64, 64))}])
    assert set(losses) == {"loss_sem_seg"}
