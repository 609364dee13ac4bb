"""SeMask Mix Transformer: sizes, interface, an independent mmseg-style forward, bad input."""

import pytest
import torch
import torch.nn.functional as F
from conftest import semask_cfg
from detectron2.modeling import build_backbone
from test_backbone_swin import assert_declared_outputs_and_gradients
from test_convert_weights import mit_sizes, mmseg_mit_state_dict

from semask.modeling.backbone import MIT_SIZES, D2SeMaskMiT, set_sdpa
from semask.modeling.backbone.convert import convert_mit

STAGES = ("res2", "res3", "res4", "res5")
# Plain MiT encoders equal SegFormer's published sizes (3.4M/13.1M/24.2M/44.0M/60.8M/81.4M);
# with semantic layers (150 classes) the counts grow by 2C^2 + 304C + 301 per stage.
PLAIN_PARAMS = {
    "b0": 3_319_392,
    "b1": 13_151_424,
    "b2": 24_196_288,
    "b3": 44_072_128,
    "b4": 60_842_688,
    "b5": 81_443_008,
}
SEMASK_PARAMS = {
    "b0": 3_668_756,
    "b1": 14_233_972,
    "b2": 25_278_836,
    "b3": 45_154_676,
    "b4": 61_925_236,
    "b5": 82_525_556,
}
SLOW = pytest.mark.slow


def mit(size: str, **kwargs) -> D2SeMaskMiT:
    return D2SeMaskMiT(num_classes=150, **MIT_SIZES[size], **kwargs)


@pytest.mark.parametrize("size", MIT_SIZES)
def test_size_variant_parameter_counts(size):
    with torch.device("meta"):
        assert sum(p.numel() for p in mit(size).parameters()) == SEMASK_PARAMS[size]
        plain = mit(size, num_sem_blocks=0)
    assert sum(p.numel() for p in plain.parameters()) == PLAIN_PARAMS[size]


@pytest.mark.parametrize(
    "size", ["b0", "b1"] + [pytest.param(s, marks=SLOW) for s in ("b2", "b3", "b4", "b5")]
)
def test_size_variant_shapes_and_gradients(size):
    torch.manual_seed(0)
    assert_declared_outputs_and_gradients(mit(size, drop_path_rate=0.0), 70, 45)


def test_built_from_config_with_priors():
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskMiT"
    cfg.MODEL.MIT.EMBED_DIMS = [16, 32, 40, 64]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 7
    cfg.MODEL.MIT.OUT_FEATURES = ["res2", "res4"]
    model = build_backbone(cfg).eval()
    assert model.size_divisibility == 32
    out = model(torch.randn(1, 3, 64, 96))
    assert set(out) == {"res2", "res4"} | {f"prior_{s}" for s in STAGES}
    assert out["prior_res5"].shape == (1, 7, 2, 3)
    assert out["res4"].shape == (1, 40, 4, 6)


def test_sdpa_and_matmul_paths_agree_and_batch_is_independent():
    torch.manual_seed(0)
    model = mit("b0").eval()
    for module in model.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(1.0)
    x = torch.randn(2, 3, 53, 77)
    with torch.no_grad():
        fused = model(x)
        single = model(x[:1])
        set_sdpa(model, False)
        plain = model(x)
    for name in fused:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fused[name][:1], single[name], rtol=1e-4, atol=1e-5)


def layer_norm(state, name, t, eps=1e-6):
    return F.layer_norm(t, t.shape[-1:], state[name + ".weight"], state[name + ".bias"], eps)


def mmseg_style_forward(state, sizes, x):
    """MiT written from mmseg's description: nn.MultiheadAttention, conv-based Mix-FFN."""
    outputs = []
    for i, (c, sr, heads) in enumerate(zip(sizes["dims"], sizes["sr"], sizes["heads"])):
        p = f"layers.{i}."
        kernel, stride = (7, 4) if i == 0 else (3, 2)
        x = F.conv2d(
            x, state[p + "0.projection.weight"], state[p + "0.projection.bias"], stride, kernel // 2
        )
        b, _, h, w = x.shape
        tokens = F.layer_norm(
            x.flatten(2).transpose(1, 2), (c,), state[p + "0.norm.weight"], state[p + "0.norm.bias"]
        )
        for j in range(sizes["depths"][i]):
            q = f"{p}1.{j}."

            y = layer_norm(state, q + "norm1", tokens)
            source = y
            if sr > 1:
                grid = y.transpose(1, 2).reshape(b, c, h, w)
                source = F.conv2d(grid, state[q + "attn.sr.weight"], state[q + "attn.sr.bias"], sr)
                source = layer_norm(state, q + "attn.norm", source.flatten(2).transpose(1, 2), 1e-5)
            attn, _ = F.multi_head_attention_forward(
                y.transpose(0, 1), source.transpose(0, 1), source.transpose(0, 1), c, heads,
                state[q + "attn.attn.in_proj_weight"], state[q + "attn.attn.in_proj_bias"],
                None, None, False, 0.0,
                state[q + "attn.attn.out_proj.weight"], state[q + "attn.attn.out_proj.bias"],
                training=False, need_weights=False,
            )  # fmt: skip
            tokens = tokens + attn.transpose(0, 1)
            grid = layer_norm(state, q + "norm2", tokens).transpose(1, 2).reshape(b, c, h, w)
            hidden = F.conv2d(
                grid, state[q + "ffn.layers.0.weight"], state[q + "ffn.layers.0.bias"]
            )
            hidden = F.conv2d(
                hidden, state[q + "ffn.layers.1.weight"], state[q + "ffn.layers.1.bias"],
                padding=1, groups=hidden.shape[1],
            )  # fmt: skip
            out = F.conv2d(
                F.gelu(hidden), state[q + "ffn.layers.4.weight"], state[q + "ffn.layers.4.bias"]
            )
            tokens = tokens + out.flatten(2).transpose(1, 2)
        tokens = F.layer_norm(tokens, (c,), state[p + "2.weight"], state[p + "2.bias"], 1e-6)
        x = tokens.transpose(1, 2).reshape(b, c, h, w)
        outputs.append(x)
    return outputs


def test_converted_mmseg_weights_reproduce_mmseg_style_forward():
    torch.manual_seed(0)
    sizes = mit_sizes()
    state = mmseg_mit_state_dict(sizes["dims"], sizes["depths"], sizes["sr"], sizes["heads"])
    model = D2SeMaskMiT(
        num_classes=1,
        embed_dims=sizes["dims"],
        depths=sizes["depths"],
        num_heads=sizes["heads"],
        sr_ratios=sizes["sr"],
        num_sem_blocks=0,
    ).eval()
    model.load_state_dict(convert_mit(state), strict=True)
    x = torch.randn(2, 3, 67, 90)
    with torch.no_grad():
        out = model(x)
        expected = mmseg_style_forward(state, sizes, x)
    for name, reference in zip(STAGES, expected):
        error = ((out[name] - reference).norm() / reference.norm()).item()
        assert error < 1e-5, (name, error)


@pytest.mark.parametrize(
    "shape,message",
    [((1, 1, 32, 32), r"\[B, 3, H, W\], got \[1, 1, 32, 32\]"), ((1, 3, 1, 1), "too small")],
)
def test_bad_input_raises_clear_error(shape, message):
    with pytest.raises(ValueError, match=message):
        mit("b0")(torch.zeros(shape))


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match=r"MODEL.MIT.DEPTHS needs 4 stages, got \[2, 2\]"):
        D2SeMaskMiT(num_classes=3, depths=(2, 2))
    with pytest.raises(ValueError, match="width 40 is not divisible by 3 heads"):
        D2SeMaskMiT(num_classes=3, embed_dims=(16, 32, 40, 64), num_heads=(1, 2, 3, 8))


def test_windowed_stages_come_from_the_config():
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskMiT"
    cfg.MODEL.MIT.EMBED_DIMS, cfg.MODEL.MIT.SEM_WINDOW_SIZE = [8, 16, 40, 64], 3
    cfg.MODEL.SEMASK.WINDOWED_STAGES = [1, 3]
    backbone = build_backbone(cfg)
    windows = [getattr(backbone, f"semantic_layer{i}").window_size for i in range(1, 5)]
    assert windows == [None, 3, None, 3]
