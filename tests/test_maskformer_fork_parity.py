"""This project's SeMask MaskFormer config reproduces the published SeMask-MaskFormer code: a micro
model with perturbed weights on an odd-sized image, plain inference and multi-scale + flip TTA
(fixture and how it was made: tests/fixtures/maskformer/README.md)."""

from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.modeling import build_model

from semask.modeling.meta_arch import SemanticSegmentorWithTTA

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "maskformer"
CONFIG = REPO_ROOT / "configs/ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml"
STAGES = ("res2", "res3", "res4", "res5")
HEIGHT, WIDTH = 83, 117


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURE / "outputs.pt")


def _cfg(*opts: str):
    cfg = semask_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_file(str(FIXTURE / "micro.yaml"))
    cfg.merge_from_list(list(opts))
    return cfg


def _model(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.load_state_dict(torch.load(FIXTURE / "weights.pth"), strict=True)
    return model.eval()


def _run(model):
    captured = {}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, out: captured.update(backbone=out)),
        model.sem_seg_head.register_forward_hook(lambda m, i, out: captured.update(head=out)),
    ]
    image = torch.load(FIXTURE / "input.pt")
    with torch.no_grad():
        (result,) = model([{"image": image, "height": HEIGHT, "width": WIDTH}])
    for hook in hooks:
        hook.remove()
    head = captured["head"]
    outputs = {
        "sem_seg": result["sem_seg"],
        "pred_logits": head["pred_logits"],
        "pred_masks": head["pred_masks"],
        "aux_pred_logits": torch.stack([a["pred_logits"] for a in head["aux_outputs"]]),
        "aux_pred_masks": torch.stack([a["pred_masks"] for a in head["aux_outputs"]]),
    }
    for stage in STAGES:
        outputs[f"features.{stage}"] = captured["backbone"][stage]
        outputs[f"priors.{stage}"] = captured["backbone"][f"prior_{stage}"]
    return outputs


def _reference(expected, key: str) -> torch.Tensor:
    group, _, stage = key.partition(".")
    return expected[group][stage] if stage else expected[key]


def test_reproduces_every_output_of_the_fork(expected):
    outputs = _run(_model(_cfg()))
    assert outputs["sem_seg"].shape == (5, HEIGHT, WIDTH)
    for key, value in outputs.items():
        reference = _reference(expected, key)
        assert value.shape == reference.shape, key
        assert rel_err(value, reference) < 1e-4, key


def test_mask2former_windowing_does_not_reproduce_it(expected):
    """The stage-2 semantic layer attends globally instead of in windows: the stage-2 prior (taken
    before that attention) still matches, everything from res4 on does not."""
    outputs = _run(_model(_cfg("MODEL.SEMASK.WINDOWED_STAGES", "[0, 1]")))
    errors = {key: rel_err(value, _reference(expected, key)) for key, value in outputs.items()}
    for key in ("features.res2", "features.res3", "priors.res4"):
        assert errors[key] < 1e-4, key
    for key in ("features.res4", "features.res5", "priors.res5", "pred_logits", "sem_seg"):
        assert errors[key] > 1e-2, (key, errors[key])


def test_tta_reproduces_the_fork(expected):
    cfg = _cfg()
    assert expected["meta"]["tta"] == {"MIN_SIZES": [56, 100], "MAX_SIZE": 1000, "FLIP": True}
    assert (list(cfg.TEST.AUG.MIN_SIZES), cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.FLIP) == (
        [56, 100],
        1000,
        True,
    )
    image = torch.load(FIXTURE / "input.pt")
    (tta,) = SemanticSegmentorWithTTA(cfg, _model(cfg))(
        [{"image": image, "height": HEIGHT, "width": WIDTH}]
    )
    assert tta["sem_seg"].shape == (5, HEIGHT, WIDTH)
    assert rel_err(tta["sem_seg"], expected["tta_sem_seg"]) < 1e-4
    assert rel_err(expected["tta_sem_seg"], expected["sem_seg"]) > 1e-2  # TTA changes the scores
