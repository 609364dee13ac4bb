"""Checkpoint converters: timm/Microsoft Swin, official SeMask, MiT (mmseg/HF), and the CLI."""

import pickle
import sys

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from timm.models.swin_transformer import SwinTransformer

from semask.checkpoint import SeMaskCheckpointer
from semask.modeling.backbone import D2SeMaskSwinTransformer, D2SwinTransformer
from semask.modeling.backbone.convert import (
    convert_mit,
    convert_semask_official,
    convert_swin_microsoft,
    convert_swin_timm,
    load_backbone_state_dict,
)
from semask.modeling.backbone.mit import D2SeMaskMiT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import convert_weights  # noqa: E402

# The backbone of the reference fixtures' micro models (tests/fixtures/mask2former).
MICRO_SWIN = dict(
    num_classes=7, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), mlp_ratio=2.0
)

STAGES = ("res2", "res3", "res4", "res5")
IMAGENET_MISSING = ("norm0", "norm1", "norm2", "semantic_layer")


def timm_round_trip(timm_model: torch.nn.Module, ours: D2SeMaskSwinTransformer, size: int):
    """Our features vs timm's stage outputs (timm normalises only the last one; we all four)."""
    missing, _ = load_backbone_state_dict(
        ours, convert_swin_timm(timm_model.state_dict()), IMAGENET_MISSING
    )
    assert sorted(missing) == [f"norm{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        _, stages = timm_model.eval().forward_intermediates(x, norm=True)
        out = ours.eval()(x)
    for i, (name, expected) in enumerate(zip(STAGES, stages)):
        if i < 3:  # our norm0..2 are fresh (weight 1, bias 0)
            expected = F.layer_norm(expected.permute(0, 2, 3, 1), expected.shape[1:2])
            expected = expected.permute(0, 3, 1, 2)
        error = ((out[name] - expected).norm() / expected.norm()).item()
        assert error < 1e-5, (name, error)


def test_timm_swin_round_trip_micro():
    # Stage sizes 64..8 stay larger than the window, so timm keeps shifting in every stage.
    torch.manual_seed(0)
    timm_model = SwinTransformer(
        img_size=256, embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4
    )
    ours = D2SwinTransformer(
        num_classes=1, embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4
    )
    timm_round_trip(timm_model, ours, 256)


@pytest.mark.slow
def test_timm_swin_tiny_round_trip():
    torch.manual_seed(0)
    timm_model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=448)
    timm_round_trip(timm_model, D2SwinTransformer(num_classes=1), 448)


def microsoft_layout(model: D2SeMaskSwinTransformer) -> dict:
    """The Microsoft ImageNet layout of ``model``'s weights: final ``norm``, classifier, masks."""
    state = {
        k: v for k, v in model.state_dict().items() if not k.startswith(("norm0", "norm1", "norm2"))
    }
    state = {k.replace("norm3.", "norm."): v for k, v in state.items()}
    state["head.weight"], state["head.bias"] = torch.randn(1000, 192), torch.randn(1000)
    state["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    return {"model": state, "optimizer": {}, "epoch": 300}


def micro_plain(**kwargs) -> D2SeMaskSwinTransformer:
    args = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_sem_blocks=0)
    return D2SeMaskSwinTransformer(num_classes=1, **{**args, **kwargs})


@pytest.mark.parametrize("converter", [convert_swin_microsoft, convert_swin_timm])
def test_microsoft_imagenet_checkpoint_converts(converter):
    torch.manual_seed(0)
    source = micro_plain()
    converted = converter(microsoft_layout(source))
    target = micro_plain()
    missing, _ = load_backbone_state_dict(target, converted, IMAGENET_MISSING)
    assert sorted(missing) == [f"norm{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    for name, value in target.state_dict().items():
        if not name.startswith(("norm0", "norm1", "norm2")):
            torch.testing.assert_close(value, source.state_dict()[name], msg=name)
    semask_target = micro_plain(num_sem_blocks=1)
    missing, _ = load_backbone_state_dict(semask_target, converted, IMAGENET_MISSING)
    assert any("semantic_layer" in k for k in missing)
    with pytest.raises(ValueError, match=r"missing \['layers\.0\.semantic_layer"):
        load_backbone_state_dict(semask_target, converted, ("norm0", "norm1", "norm2"))


def test_timm_converter_moves_downsampling_to_the_previous_stage():
    state = {
        "layers.1.downsample.reduction.weight": torch.zeros(4, 8),
        "layers.1.blocks.0.attn.relative_position_bias_table": torch.zeros(49, 2),
        "head.fc.weight": torch.zeros(3, 4),
    }
    out = convert_swin_timm(state)
    assert set(out) == {
        "layers.0.downsample.reduction.weight",
        "layers.1.blocks.0.attn.relative_position_bias_table",
        "layers.1.blocks.0.attn.relative_position_index",
    }
    assert out["layers.1.blocks.0.attn.relative_position_index"].shape == (16, 16)


def test_official_semask_checkpoint_loads_strictly(reference_dir):
    official = torch.load(reference_dir / "micro_msdeform.pth")
    converted = convert_semask_official({"model": official})
    model = D2SeMaskSwinTransformer(**MICRO_SWIN)
    model.load_state_dict(converted, strict=True)
    assert convert_semask_official(converted).keys() == converted.keys()


def test_cli_writes_detectron2_pkl_that_the_checkpointer_loads(reference_dir, tmp_path, capsys):
    output = tmp_path / "semask_micro.pkl"
    convert_weights.main(
        [
            "semask",
            str(reference_dir / "micro_msdeform.pth"),
            str(output),
            "--config",
            str(reference_dir / "micro_msdeform_config.yaml"),
        ]
    )
    assert "0 keys left at init" in capsys.readouterr().out
    with output.open("rb") as f:
        data = pickle.load(f)
    assert all(k.startswith("backbone.") for k in data["model"])
    holder = torch.nn.Module()
    holder.backbone = D2SeMaskSwinTransformer(**MICRO_SWIN)
    SeMaskCheckpointer(holder).load(str(output))
    official = torch.load(reference_dir / "micro_msdeform.pth")
    for name, value in holder.backbone.state_dict().items():
        torch.testing.assert_close(value, official["backbone." + name], msg=name)


def test_cli_writes_safetensors_that_the_checkpointer_loads(reference_dir, tmp_path):
    output = tmp_path / "semask_micro.safetensors"
    convert_weights.main(["semask", str(reference_dir / "micro_msdeform.pth"), str(output)])
    holder = torch.nn.Module()
    holder.backbone = D2SeMaskSwinTransformer(**MICRO_SWIN)
    SeMaskCheckpointer(holder, strict=True).load(str(output))
    official = torch.load(reference_dir / "micro_msdeform.pth")
    for name, value in holder.backbone.state_dict().items():
        torch.testing.assert_close(value, official["backbone." + name], msg=name)


def test_cli_refuses_an_output_that_model_weights_would_not_read(tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert_weights.main(["semask", str(tmp_path / "in.pth"), str(tmp_path / "out.bin")])
    assert "out.bin must end in one of .pth, .pt, .pkl, .safetensors" in capsys.readouterr().err


def test_cli_rejects_checkpoint_for_another_class_count(reference_dir, tmp_path):
    with pytest.raises(
        ValueError, match=r"mlp_cls_q\.weight: checkpoint \[7, 8\] vs model \[150, 8\]"
    ):
        convert_weights.main(
            [
                "semask",
                str(reference_dir / "micro_msdeform.pth"),
                str(tmp_path / "out.pth"),
                "--config",
                str(reference_dir / "micro_msdeform_config.yaml"),
                "--opts",
                "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
                "150",
            ]
        )
    assert not (tmp_path / "out.pth").exists()


# --- MiT: parameter names written down independently of the converter -------------------------


def mit_sizes():
    return dict(dims=(16, 32, 40, 64), depths=(1, 2, 1, 1), sr=(8, 4, 2, 1), heads=(1, 2, 5, 8))


def mmseg_mit_state_dict(dims, depths, sr, heads, ratio=4):
    """Random weights under mmseg >= 1.0 ``MixVisionTransformer`` names and shapes."""
    state, previous = {}, 3
    for i, (c, kernel) in enumerate(zip(dims, (7, 3, 3, 3))):
        h = c * ratio
        p = f"layers.{i}."
        state[p + "0.projection.weight"] = torch.randn(c, previous, kernel, kernel) * 0.1
        state[p + "0.projection.bias"] = torch.randn(c) * 0.1
        state[p + "0.norm.weight"], state[p + "0.norm.bias"] = (
            1 + torch.randn(c) * 0.1,
            torch.randn(c) * 0.1,
        )
        for j in range(depths[i]):
            b = f"{p}1.{j}."
            for norm in ("norm1", "norm2") + (("attn.norm",) if sr[i] > 1 else ()):
                state[b + norm + ".weight"] = 1 + torch.randn(c) * 0.1
                state[b + norm + ".bias"] = torch.randn(c) * 0.1
            state[b + "attn.attn.in_proj_weight"] = torch.randn(3 * c, c) * 0.1
            state[b + "attn.attn.in_proj_bias"] = torch.randn(3 * c) * 0.1
            state[b + "attn.attn.out_proj.weight"] = torch.randn(c, c) * 0.1
            state[b + "attn.attn.out_proj.bias"] = torch.randn(c) * 0.1
            if sr[i] > 1:
                state[b + "attn.sr.weight"] = torch.randn(c, c, sr[i], sr[i]) * 0.05
                state[b + "attn.sr.bias"] = torch.randn(c) * 0.1
            state[b + "ffn.layers.0.weight"] = torch.randn(h, c, 1, 1) * 0.1
            state[b + "ffn.layers.0.bias"] = torch.randn(h) * 0.1
            state[b + "ffn.layers.1.weight"] = torch.randn(h, 1, 3, 3) * 0.1
            state[b + "ffn.layers.1.bias"] = torch.randn(h) * 0.1
            state[b + "ffn.layers.4.weight"] = torch.randn(c, h, 1, 1) * 0.1
            state[b + "ffn.layers.4.bias"] = torch.randn(c) * 0.1
        state[p + "2.weight"], state[p + "2.bias"] = 1 + torch.randn(c) * 0.1, torch.randn(c) * 0.1
        previous = c
    return state


def hf_from_mmseg(state):
    """The same weights under HuggingFace ``SegformerModel`` names."""
    hf = {}
    for name, value in state.items():
        parts = name.split(".")
        i = parts[1]
        if parts[2] == "0":
            kind = {"projection": "proj", "norm": "layer_norm"}[parts[3]]
            hf[f"encoder.patch_embeddings.{i}.{kind}.{parts[4]}"] = value
        elif parts[2] == "2":
            hf[f"encoder.layer_norm.{i}.{parts[3]}"] = value
        else:
            b = f"encoder.block.{i}.{parts[3]}."
            rest = ".".join(parts[4:])
            if rest.startswith("attn.attn.in_proj_"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name_, chunk in zip(("query", "key", "value"), value.chunk(3)):
                    hf[b + f"attention.self.{name_}.{kind}"] = chunk
                continue
            renames = {
                "norm1.": "layer_norm_1.",
                "norm2.": "layer_norm_2.",
                "attn.attn.out_proj.": "attention.output.dense.",
                "attn.sr.": "attention.self.sr.",
                "attn.norm.": "attention.self.layer_norm.",
                "ffn.layers.0.": "mlp.dense1.",
                "ffn.layers.1.": "mlp.dwconv.dwconv.",
                "ffn.layers.4.": "mlp.dense2.",
            }
            old = next(o for o in renames if rest.startswith(o))
            if old in ("ffn.layers.0.", "ffn.layers.4.") and value.dim() == 4:
                value = value.flatten(1)
            hf[b + renames[old] + rest[len(old) :]] = value
    return hf


def mit_model(num_sem_blocks=0):
    s = mit_sizes()
    return D2SeMaskMiT(
        num_classes=4,
        embed_dims=s["dims"],
        depths=s["depths"],
        num_heads=s["heads"],
        sr_ratios=s["sr"],
        num_sem_blocks=num_sem_blocks,
    )


@pytest.mark.parametrize("layout", ["mmseg", "hf", "hf_prefixed", "mmseg_full_model"])
def test_mit_converter_covers_every_key_exactly(layout):
    torch.manual_seed(0)
    s = mit_sizes()
    mmseg = mmseg_mit_state_dict(s["dims"], s["depths"], s["sr"], s["heads"])
    source = {
        "mmseg": mmseg,
        "hf": hf_from_mmseg(mmseg),
        "hf_prefixed": {"segformer." + k: v for k, v in hf_from_mmseg(mmseg).items()},
        "mmseg_full_model": {
            **{"backbone." + k: v for k, v in mmseg.items()},
            "decode_head.conv_seg.weight": torch.zeros(4, 8, 1, 1),
        },
    }[layout]
    converted = convert_mit({"state_dict": source})
    model = mit_model()
    model.load_state_dict(converted, strict=True)
    c = s["dims"][1]
    in_proj = mmseg["layers.1.1.1.attn.attn.in_proj_weight"]
    torch.testing.assert_close(model.block2[1].attn.q.weight, in_proj[:c])
    torch.testing.assert_close(model.block2[1].attn.kv.weight, in_proj[c:])
    torch.testing.assert_close(
        model.block3[0].mlp.fc2.weight, mmseg["layers.2.1.0.ffn.layers.4.weight"].flatten(1)
    )
    missing, _ = load_backbone_state_dict(mit_model(1), converted, ("semantic_layer",))
    assert missing and all(k.startswith("semantic_layer") for k in missing)


def test_mit_converter_keeps_segformer_names():
    model = mit_model()
    state = {"backbone." + k: v for k, v in model.state_dict().items()}
    state["decode_head.linear_pred.weight"] = torch.zeros(2, 2)
    assert convert_mit(state).keys() == model.state_dict().keys()


def test_cli_converts_mit_for_the_mit_config(tmp_path, capsys):
    """SegFormer (mmseg) MiT-B0 weights fit the shipped SeMask MiT-B0 config: only the semantic
    layers stay at their initialisation."""
    torch.manual_seed(0)
    source, output = tmp_path / "mit_b0.pth", tmp_path / "mit_b0.pkl"
    torch.save(
        mmseg_mit_state_dict((32, 64, 160, 256), (2, 2, 2, 2), (8, 4, 2, 1), (1, 2, 5, 8)), source
    )
    config = REPO_ROOT / "configs/ade20k/semantic_fpn/semask_mit_b0_bs16_80k_res512.yaml"
    convert_weights.main(["mit", str(source), str(output), "--config", str(config)])
    report = capsys.readouterr().out
    left = [line.strip() for line in report.splitlines()[1:] if line.startswith("  ")]
    assert report.startswith(f"loads into D2SeMaskMiT; {len(left)} keys left at init")
    assert left and all(k.startswith("semantic_layer") for k in left)
    with output.open("rb") as f:
        weights = pickle.load(f)["model"]
    assert "backbone.block3.1.attn.kv.weight" in weights
    assert not any("semantic_layer" in k for k in weights)


@pytest.mark.parametrize(
    "name",
    ["layers.0.1.0.ffn.layers.2.weight", "layers.0.3.weight", "encoder.block.0.0.attention.x.w"],
)
def test_mit_converter_names_an_unknown_entry(name):
    torch.manual_seed(0)
    s = mit_sizes()
    state = mmseg_mit_state_dict(s["dims"], s["depths"], s["sr"], s["heads"])
    if name.startswith("encoder."):
        state = hf_from_mmseg(state)
    state[name] = torch.zeros(1)
    with pytest.raises(KeyError, match=f"entry {name!r} is not a"):
        convert_mit(state)
