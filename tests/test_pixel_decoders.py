"""Pixel decoders built from configs: shapes, gradients, tied norms, tiny and empty inputs."""

import pytest
import torch
from conftest import semask_cfg
from detectron2.layers import ShapeSpec

import semask  # noqa: F401
from semask.modeling.pixel_decoder import PIXEL_DECODER_REGISTRY, build_pixel_decoder

NAMES = [
    "BasePixelDecoder",
    "PixelFANDecoder",
    "MSDeformAttnPixelDecoder",
    "MSDeformAttnPixelFANDecoder",
]
CHANNELS = {"res2": 8, "res3": 16, "res4": 24, "res5": 32}
CONV_DIM, MASK_DIM = 64, 16  # GroupNorm(32): 2 channels a group, so 1x1 maps normalise


def input_shape():
    shapes = {
        k: ShapeSpec(channels=c, stride=2 ** (i + 2)) for i, (k, c) in enumerate(CHANNELS.items())
    }
    shapes["prior_res2"] = ShapeSpec(channels=5, stride=4)  # ignored: not in IN_FEATURES
    return shapes


def build(name, follow_autocast=False):
    cfg = semask_cfg()
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_AUTOCAST = follow_autocast
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = list(CHANNELS)
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = name
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = CONV_DIM
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = MASK_DIM
    cfg.MODEL.SEM_SEG_HEAD.NORM = "GN"
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 1
    cfg.MODEL.MASK_FORMER.NHEADS = 4
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.0
    torch.manual_seed(0)
    return build_pixel_decoder(cfg, input_shape())


def features(batch, height, width):
    gen = torch.Generator().manual_seed(1)
    return {
        k: torch.randn(batch, c, height // 2 ** (i + 2), width // 2 ** (i + 2), generator=gen)
        for i, (k, c) in enumerate(CHANNELS.items())
    }


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_official_name(name):
    assert PIXEL_DECODER_REGISTRY.get(name).__name__ == name


def perturb_zero_initialised(decoder):
    """The official init zeroes the weights that predict deformable offsets and attention
    weights, so at step 0 the layers before them get an all-zero gradient; a step later they do
    not. Give those weights small values, as after some training."""
    for name, param in decoder.named_parameters():
        if name.endswith(
            ("sampling_offsets.weight", "attention_weights.weight", "offset_mask.weight")
        ):
            torch.nn.init.normal_(param.data, std=0.01)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_every_parameter_trains(name):
    decoder = build(name)
    perturb_zero_initialised(decoder)
    mask_features, encoder_features, multi_scale = decoder.forward_features(features(2, 64, 96))
    assert mask_features.shape == (2, MASK_DIM, 16, 24)
    assert [tuple(f.shape[-2:]) for f in multi_scale] == [(2, 3), (4, 6), (8, 12)]
    assert all(f.shape[:2] == (2, CONV_DIM) for f in multi_scale)
    if name.startswith("MSDeformAttn"):
        assert encoder_features.shape == (2, CONV_DIM, 2, 3)
    else:
        assert encoder_features is None
    loss = mask_features.square().mean() + sum(f.square().mean() for f in multi_scale)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in decoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []


@pytest.mark.parametrize("name", ["PixelFANDecoder", "MSDeformAttnPixelFANDecoder"])
def test_feature_align_shares_the_output_norm(name):
    decoder = build(name)
    levels = [k for k in ("1", "2", "3") if hasattr(decoder, f"align_{k}")]
    assert levels == (["1", "2", "3"] if name == "PixelFANDecoder" else ["1"])
    for k in levels:
        assert getattr(decoder, f"align_{k}").offset.norm is getattr(decoder, f"layer_{k}").norm
    state = decoder.state_dict()
    assert "align_1.offset.norm.weight" in state and "layer_1.norm.weight" in state
    # a strict load of both names keeps one tensor
    state["layer_1.norm.weight"] = torch.full_like(state["layer_1.norm.weight"], 3.0)
    state["align_1.offset.norm.weight"] = state["layer_1.norm.weight"]
    decoder.load_state_dict(state, strict=True)
    assert torch.equal(decoder.align_1.offset.norm.weight, torch.full((CONV_DIM,), 3.0))


@pytest.mark.parametrize("name", NAMES)
def test_single_pixel_coarsest_level(name):
    decoder = build(name).eval()
    mask_features, _, multi_scale = decoder.forward_features(features(1, 32, 32))
    assert multi_scale[0].shape[-2:] == (1, 1)
    assert mask_features.shape == (1, MASK_DIM, 8, 8) and torch.isfinite(mask_features).all()


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    decoder = build(name).eval()
    mask_features, _, multi_scale = decoder.forward_features(features(0, 64, 64))
    assert mask_features.shape == (0, MASK_DIM, 16, 16)
    assert [tuple(f.shape) for f in multi_scale] == [
        (0, CONV_DIM, 2, 2),
        (0, CONV_DIM, 4, 4),
        (0, CONV_DIM, 8, 8),
    ]


def test_bf16_autocast_keeps_msdeform_decoder_in_float32():
    """Under bf16 autocast the decoder computes in float32: its outputs equal (to float32
    rounding) those of a float32 run on the same bf16-rounded inputs."""
    decoder = build("MSDeformAttnPixelFANDecoder").eval()
    feats = {k: v.bfloat16() for k, v in features(1, 64, 64).items()}
    with torch.no_grad():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mask_features, _, multi_scale = decoder.forward_features(feats)
        expected = decoder.forward_features({k: v.float() for k, v in feats.items()})
    assert mask_features.dtype == torch.float32
    torch.testing.assert_close(mask_features, expected[0])
    for level, reference in zip(multi_scale, expected[2]):
        torch.testing.assert_close(level, reference)


@pytest.mark.parametrize("name", ["MSDeformAttnPixelDecoder", "MSDeformAttnPixelFANDecoder"])
def test_decoder_following_autocast_runs_its_products_in_bf16(name):
    """PIXEL_DECODER_AUTOCAST: every convolution and linear layer returns bf16 under bf16
    autocast except those that place and weigh the deformable samples (and the deformable
    convolution's own offsets); the outputs are within bf16 rounding (relative norm error under
    2%) of a float32 run on the same bf16-rounded inputs."""
    decoder = build(name, follow_autocast=True).eval()
    float32_layers = set()

    def record(name):
        def hook(module, inputs, out):
            if out.dtype == torch.float32:
                float32_layers.add(name)

        return hook

    for layer_name, module in decoder.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(record(layer_name.rsplit(".", 1)[-1]))
    feats = {k: v.bfloat16() for k, v in features(1, 64, 64).items()}
    with torch.no_grad():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mask_features, _, multi_scale = decoder.forward_features(feats)
        float32_under_autocast = set(float32_layers)
        expected = decoder.forward_features({k: v.float() for k, v in feats.items()})
    assert mask_features.dtype == torch.bfloat16
    expected_float32 = {"sampling_offsets", "attention_weights"}
    if "FAN" in name:
        expected_float32.add("conv_offset_mask")
    assert float32_under_autocast == expected_float32
    for actual, reference in zip([mask_features, *multi_scale], [expected[0], *expected[2]]):
        error = (actual.float() - reference).norm() / reference.norm()
        assert error < 2e-2, error


def test_missing_encoder_feature_is_reported():
    cfg = semask_cfg()
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = list(CHANNELS)
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = CONV_DIM
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res4", "res6"]
    with pytest.raises(ValueError, match="res6"):
        build_pixel_decoder(cfg, input_shape())


@pytest.mark.parametrize("name", ["BasePixelDecoder", "MSDeformAttnPixelDecoder"])
def test_input_smaller_than_the_coarsest_stride_is_reported(name):
    decoder = build(name).eval()
    with pytest.raises(ValueError, match="'res5' has shape"):
        decoder.forward_features(features(1, 16, 16))
    with pytest.raises(KeyError, match="'res2' missing"):
        decoder.forward_features({k: v for k, v in features(1, 64, 64).items() if k != "res2"})
