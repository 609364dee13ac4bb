"""SeMask Swin backbone: official parity, interface, sizes, padding, checkpointing, bad input."""

import json

import pytest
import torch
from conftest import semask_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from semask.modeling.backbone import SWIN_SIZES, D2SeMaskSwinTransformer, set_sdpa, swin_blocks
from semask.modeling.backbone.convert import load_backbone_state_dict, strip_prefix
from semask.modeling.backbone.sdpa import sdpa_unfused_on_cpu

STAGES = ("res2", "res3", "res4", "res5")
# Parameter counts with 150 classes; T and L are the official counts measured on the published code.
SEMASK_PARAMS = {"T": 29_526_382, "S": 50_844_286, "B": 90_250_540, "L": 202_344_808}
SEMANTIC_LAYER_PARAMS = {"T": 2_005_684, "S": 2_005_684, "B": 3_370_164, "L": 7_143_604}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def swin(size: str, num_classes: int = 150, **kwargs) -> D2SeMaskSwinTransformer:
    sizes = SWIN_SIZES[size]
    return D2SeMaskSwinTransformer(
        num_classes=num_classes, sem_window_size=sizes["window_size"], **sizes, **kwargs
    )


def micro(**kwargs) -> D2SeMaskSwinTransformer:
    """The reference fixture's micro widths."""
    args = dict(num_classes=19, embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    args.update(kwargs)
    return D2SeMaskSwinTransformer(drop_path_rate=0.0, **args)


@pytest.fixture(scope="module")
def reference(reference_dir):
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / "micro_msdeform_config.yaml"))
    state = strip_prefix(torch.load(reference_dir / "micro_msdeform.pth"), "backbone.")
    outputs = torch.load(reference_dir / "micro_msdeform_outputs.pt")
    keys = json.loads((reference_dir / "micro_msdeform_keys.json").read_text())["keys"]
    return cfg, state, outputs, keys


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_matches_official_fixture(reference, use_sdpa):
    cfg, state, outputs, _ = reference
    model = build_backbone(cfg).eval()
    model.load_state_dict(state, strict=True)
    set_sdpa(model, use_sdpa)
    with torch.no_grad():
        out = model(outputs["normalized_input"])
    for name in STAGES:
        assert rel_err(out[name], outputs["features"][name]) < 1e-4, name
        assert rel_err(out[f"prior_{name}"], outputs["cls_outputs"][name]) < 1e-4, name


def test_parameter_names_and_shapes_equal_official(reference):
    cfg, _, _, keys = reference
    official = {k[len("backbone.") :]: s for k, s, _ in keys if k.startswith("backbone.")}
    ours = {k: list(v.shape) for k, v in build_backbone(cfg).state_dict().items()}
    assert ours == official


@pytest.mark.parametrize("size", SWIN_SIZES)
def test_size_variant_parameter_counts(size):
    with torch.device("meta"):  # counting needs no memory or initialisation
        model = swin(size)
    assert sum(p.numel() for p in model.parameters()) == SEMASK_PARAMS[size]
    semantic = sum(p.numel() for n, p in model.named_parameters() if "semantic_layer" in n)
    assert semantic == SEMANTIC_LAYER_PARAMS[size]


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "size",
    [
        "T",
        pytest.param("S", marks=SLOW),
        pytest.param("B", marks=SLOW),
        pytest.param("L", marks=SLOW),
    ],
)
def test_size_variant_shapes_and_gradients(size):
    torch.manual_seed(0)
    # no stochastic depth: it could drop a whole block's branch
    assert_declared_outputs_and_gradients(swin(size, drop_path_rate=0.0), 40, 52)


def assert_declared_outputs_and_gradients(model: torch.nn.Module, height: int, width: int):
    """A [2, 3, height, width] input gives exactly the declared outputs (shapes, finite values),
    and every parameter gets a non-zero gradient from them."""
    for module in model.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.5)  # a trained value, so every branch carries gradient
    out = model(torch.randn(2, 3, height, width))
    shapes = model.output_shape()
    assert set(out) == set(shapes)
    for name, tensor in out.items():
        stride = shapes[name].stride
        expected = (2, shapes[name].channels, -(-height // stride), -(-width // stride))
        assert tensor.shape == expected, name
        assert torch.isfinite(tensor).all(), name
    sum(t.square().mean() for t in out.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []


def test_plain_swin_registered_without_semantic_layers():
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    model = build_backbone(cfg)
    assert not any("semantic_layer" in n for n in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == SEMASK_PARAMS["T"] - 2_005_684
    assert set(model.output_shape()) == set(STAGES)
    assert model.size_divisibility == 32


def test_output_shape_declares_priors_and_respects_out_features():
    model = micro(out_features=("res3", "res5"))
    shapes = model.output_shape()
    assert set(shapes) == {"res3", "res5"} | {f"prior_{s}" for s in STAGES}
    assert shapes["prior_res4"] == ShapeSpec(channels=19, stride=16)
    assert shapes["res5"] == ShapeSpec(channels=192, stride=32)
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert set(out) == set(shapes)


@pytest.mark.parametrize("height,width", [(37, 51), (5, 130), (64, 64)])
def test_any_input_size_and_batch_independence(height, width):
    torch.manual_seed(0)
    model = micro().eval()
    x = torch.randn(2, 3, height, width)
    with torch.no_grad():
        batch = model(x)
        single = model(x[1:])
    for name, tensor in batch.items():
        stride = model.output_shape()[name].stride
        assert tensor.shape[-2:] == (-(-height // stride), -(-width // stride))
        torch.testing.assert_close(tensor[1:], single[name], rtol=1e-4, atol=1e-5)


def test_sdpa_and_matmul_paths_agree():
    torch.manual_seed(0)
    model = micro(ape=True).eval()
    for module in model.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(1.0)
    x = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        fused = model(x)
        set_sdpa(model, False)
        plain = model(x)
    for name in fused:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shifted", [False, True])
def test_training_window_attention_equals_sdpa_with_its_gradients(shifted, monkeypatch):
    """Training the bias on the CPU takes the explicit formula instead of SDPA's math fallback:
    same output and same gradients of the input and every parameter."""
    torch.manual_seed(0)
    attention = swin_blocks.WindowAttention(dim=12, window_size=3, num_heads=3).train()
    x = torch.randn(4, 9, 12, requires_grad=True)
    mask = torch.zeros(2, 9, 9)
    mask[1, :4, 4:] = -100.0
    mask = mask if shifted else None
    grad = torch.randn(4, 9, 12)

    def run():
        out = attention(x, mask)
        inputs = [x, *attention.parameters()]
        return out, torch.autograd.grad(out, inputs, grad)

    explicit = run()
    monkeypatch.setattr(swin_blocks, "sdpa_unfused_on_cpu", lambda query, value, bias: False)
    sdpa = run()
    torch.testing.assert_close(explicit[0], sdpa[0], rtol=1e-5, atol=1e-6)
    for got, want in zip(explicit[1], sdpa[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # eval keeps the fused kernel
        assert not sdpa_unfused_on_cpu(x, x, attention.relative_position_bias_table)
    assert sdpa_unfused_on_cpu(x, x[..., :5])  # heads of two sizes


def test_gradient_checkpointing_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    reference = micro()
    checkpointed = micro(use_checkpoint=True)
    checkpointed.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 40, 40)
    grads = []
    for model in (reference, checkpointed):
        model.eval()  # no dropout, so both runs are deterministic
        out = model(x)
        sum(t.square().mean() for t in out.values()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_frozen_stages_stay_frozen_in_train_mode():
    model = micro(frozen_stages=2).train()
    frozen = [model.patch_embed, model.layers[0]]
    for module in frozen:
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert model.layers[1].training
    assert all(p.requires_grad for p in model.layers[1].parameters())
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskSwinTransformer"
    cfg.MODEL.SWIN.FROZEN_STAGES = 0
    built = build_backbone(cfg)
    assert not any(p.requires_grad for p in built.patch_embed.parameters())


@pytest.mark.parametrize(
    "shape,message",
    [
        ((1, 4, 32, 32), r"\[B, 3, H, W\], got \[1, 4, 32, 32\]"),
        ((3, 32, 32), r"\[B, 3, H, W\], got \[3, 32, 32\]"),
        ((1, 3, 0, 32), "too small"),
        ((1, 3, 1, 1), "too small"),
        ((0, 3, 32, 32), "too small"),
    ],
)
def test_bad_input_raises_clear_error(shape, message):
    with pytest.raises(ValueError, match=message):
        micro()(torch.zeros(shape))


def test_checkpoint_of_other_class_count_or_size_names_the_parameter():
    model = micro()
    other_classes = micro(num_classes=150).state_dict()
    with pytest.raises(
        ValueError, match=r"mlp_cls_q\.weight: checkpoint \[150, 24\] vs model \[19, 24\]"
    ):
        load_backbone_state_dict(model, other_classes)
    wider = micro(embed_dim=32).state_dict()
    with pytest.raises(ValueError, match=r"patch_embed\.proj\.weight: checkpoint \[32, 3, 4, 4\]"):
        load_backbone_state_dict(model, wider)
    deeper = micro(depths=(2, 2, 4, 2)).state_dict()
    with pytest.raises(ValueError, match=r"unexpected \['layers\.2\.blocks\.2\."):
        load_backbone_state_dict(model, deeper)


@pytest.mark.parametrize("stages", [[0, 1], [0, 1, 2], [0, 1, 2, 3], []])
def test_windowed_stages_come_from_the_config(stages):
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskSwinTransformer"
    cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SWIN.DEPTHS = 24, [2, 2, 2, 2]
    cfg.MODEL.SWIN.NUM_HEADS, cfg.MODEL.SWIN.SEM_WINDOW_SIZE = [1, 2, 4, 8], 5
    cfg.MODEL.SEMASK.WINDOWED_STAGES = stages
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    windows = [layer.semantic_layer.window_size for layer in backbone.layers]
    assert windows == [5 if i in stages else None for i in range(4)]


def test_windowed_stages_outside_0_to_3_are_refused():
    with pytest.raises(ValueError, match=r"MODEL\.SEMASK\.WINDOWED_STAGES.*got \[1, 4\]"):
        micro(windowed_stages=(1, 4))
