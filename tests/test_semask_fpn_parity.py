"""SeMask-FPN reproduces the published mmseg fork's outputs after loading its checkpoint format.

Fixtures: tests/fixtures/semantic_fpn (see its README): one micro model in mmseg format, run by
the fork under its two semantic-layer windowing rules on a 65 x 99 image.
"""

import json
import logging
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.modeling import build_model

from semask.checkpoint import SeMaskCheckpointer, WeightsError
from semask.modeling.heads.semantic_fpn_convert import (
    convert_semask_fpn_mmseg,
    is_mmseg_semask_fpn,
    semask_fpn_windowed_stages,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "semantic_fpn"
WEIGHTS = FIXTURES / "micro.pth"
sys.path.insert(0, str(REPO_ROOT / "tools"))
import convert_weights  # noqa: E402

RULES = {"micro_global23": [0, 1], "micro_windowed": [0, 1, 2, 3]}
MEAN = torch.tensor([123.675, 116.28, 103.53])[:, None, None]
STD = torch.tensor([58.395, 57.12, 57.375])[:, None, None]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def micro_model(windowed_stages: List[int], weights: str = str(WEIGHTS)) -> torch.nn.Module:
    """The fixture's micro SeMask-FPN, loaded from ``weights`` through MODEL.WEIGHTS."""
    cfg = semask_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs" / "Base-SeMask-FPN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    swin = cfg.MODEL.SWIN
    swin.EMBED_DIM, swin.DEPTHS, swin.NUM_HEADS = 8, [2, 2, 2, 2], [1, 1, 2, 4]
    swin.WINDOW_SIZE, swin.SEM_WINDOW_SIZE = 7, 3
    swin.DROP_PATH_RATE = 0.0
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 20
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.MODEL.SEMASK.WINDOWED_STAGES = windowed_stages
    model = build_model(cfg).eval()
    SeMaskCheckpointer(model, strict=True).load(weights)
    return model


def project_outputs(model: torch.nn.Module, image: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The project's counterparts of every fixture output."""
    x = ((image.float() - MEAN) / STD)[None]
    with torch.no_grad():
        features = model.backbone(x)
        out = {"head_logits": model.sem_seg_head.layers(features)}
        height, width = image.shape[1:]
        sem_seg = model([{"image": image, "height": height, "width": width}])[0]["sem_seg"]
    out["logits"] = sem_seg[None]
    for i in range(2, 6):
        out[f"features.res{i}"] = features[f"res{i}"]
        out[f"priors.res{i}"] = features[f"prior_res{i}"]
    return out


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.load(FIXTURES / "input_65x99.pt")


@pytest.fixture(scope="module")
def computed(image: torch.Tensor) -> Dict[str, Dict[str, torch.Tensor]]:
    return {name: project_outputs(micro_model(stages), image) for name, stages in RULES.items()}


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_output_matches_the_fork(name: str, computed) -> None:
    reference = torch.load(FIXTURES / f"{name}_outputs.pt")
    keys = sorted(k for k in reference if k != "meta")
    assert sorted(computed[name]) == keys
    errors = {k: rel(computed[name][k], reference[k]) for k in keys}
    assert max(errors.values()) < 1e-4, errors


@pytest.mark.parametrize("name", sorted(RULES))
def test_the_other_windowing_rule_does_not_match(name: str, computed) -> None:
    reference = torch.load(FIXTURES / f"{name}_outputs.pt")
    other = next(n for n in RULES if n != name)
    for key in ("features.res4", "features.res5", "logits"):
        assert rel(computed[other][key], reference[key]) > 1e-3, key
    assert rel(computed[other]["features.res2"], reference["features.res2"]) < 1e-4


def test_windowing_other_than_published_is_logged(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        convert_semask_fpn_mmseg(torch.load(WEIGHTS), micro_model([0, 1, 2, 3]))
    assert not any("WINDOWED_STAGES" in r.message for r in caplog.records)
    with caplog.at_level(logging.WARNING):
        convert_semask_fpn_mmseg(torch.load(WEIGHTS), micro_model([0, 1]))
    assert "trained with MODEL.SEMASK.WINDOWED_STAGES [0, 1, 2, 3], the model has [0, 1]" in (
        caplog.text
    )


def test_published_rule() -> None:
    facts = json.loads((FIXTURES / "fork_facts.json").read_text())["published"]
    kinds = {"SWSeMaskBlock": "window", "SeMaskBlock": "global"}
    for (embed, classes), key in {
        (96, 150): "T_150",
        (96, 19): "T_19",
        (128, 150): "B_150",
    }.items():
        windowed = [
            i for i, k in enumerate(facts[f"{key}_semantic_layers"]) if kinds[k] == "window"
        ]
        assert semask_fpn_windowed_stages(embed, classes) == windowed, key


def test_swin_tiny_ade20k_layout_loads_whole() -> None:
    """Every entry of the fork's Swin-T 150-class model maps onto the project's Swin-T config."""
    facts = json.loads((FIXTURES / "fork_facts.json").read_text())["published"]
    checkpoint = {"meta": {}, "state_dict": {k: torch.zeros(s) for k, s in facts["T_150_keys"]}}
    cfg = semask_cfg()
    cfg.merge_from_file(
        str(REPO_ROOT / "configs/ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml")
    )
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert is_mmseg_semask_fpn(checkpoint)
    state = convert_semask_fpn_mmseg(checkpoint, model)
    assert state.keys() == model.state_dict().keys()
    assert sum(p.numel() for p in model.parameters()) == facts["T_150_parameters"] == 34_655_748
    assert {k for k in state if k.endswith("num_batches_tracked")} == {
        f"sem_seg_head.res{i}.{j}.norm.num_batches_tracked"
        for i, js in ((2, [0]), (3, [0]), (4, [0, 2]), (5, [0, 2, 4]))
        for j in js
    }


def test_unmapped_and_misshaped_entries_are_errors(tmp_path: Path) -> None:
    checkpoint = torch.load(WEIGHTS)
    checkpoint["state_dict"]["auxiliary_head.conv_seg.weight"] = torch.zeros(1)
    checkpoint["state_dict"]["decode_head.scale_heads.0.0.bn.momentum"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"auxiliary_head\.conv_seg\.weight.*bn\.momentum"):
        convert_semask_fpn_mmseg(checkpoint)
    checkpoint = torch.load(WEIGHTS)
    checkpoint["state_dict"]["decode_head.conv_seg.weight"] = torch.zeros(7, 16, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=r"bad\.pth.*sem_seg_head\.predictor\.weight.*\[7, 16"):
        micro_model([0, 1], str(path))


def test_convert_weights_semask_fpn(tmp_path: Path, image: torch.Tensor) -> None:
    out = tmp_path / "micro_d2.pth"
    convert_weights.main(["semask-fpn", str(WEIGHTS), str(out)])
    state = torch.load(out)["model"]
    assert "sem_seg_head.predictor.weight" in state and "backbone.norm3.weight" in state
    model = micro_model([0, 1], str(out))
    reference = torch.load(FIXTURES / "micro_global23_outputs.pt")
    assert rel(project_outputs(model, image)["logits"], reference["logits"]) < 1e-4
