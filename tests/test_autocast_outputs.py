"""Whole models under bf16 autocast in eval: the semantic scores come back in float32, resized
from float32 maps, and rank the classes as a float32 run does."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from test_predictor import QUICKSTART_CONFIG, TINY_QUICKSTART
from test_semask_fpn import tiny_fpn_cfg

from semask.engine import build_cfg


def _mask2former_cfg():
    return build_cfg(str(QUICKSTART_CONFIG), TINY_QUICKSTART + ["MODEL.WEIGHTS", ""])


@pytest.mark.parametrize("make_cfg", [_mask2former_cfg, tiny_fpn_cfg], ids=["mask2former", "fpn"])
def test_bf16_autocast_eval_returns_float32_scores_resized_in_float32(make_cfg, monkeypatch):
    torch.manual_seed(0)
    model = build_model(make_cfg()).eval()
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    inputs = [{"image": image, "height": 64, "width": 96}]
    with torch.no_grad():
        (expected,) = model(inputs)
    interpolate, resized_to_input = F.interpolate, []

    def recording_interpolate(input, size=None, *args, **kwargs):
        if size is not None and tuple(size) == tuple(image.shape[-2:]):
            resized_to_input.append(input.dtype)
        return interpolate(input, size, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", recording_interpolate)
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        (out,) = model(inputs)
    monkeypatch.undo()
    scores = out["sem_seg"]
    assert scores.dtype == torch.float32 and scores.shape == expected["sem_seg"].shape
    assert torch.isfinite(scores).all()
    assert resized_to_input == [torch.float32]  # the maps resized to the input size
    agreement = (scores.argmax(0) == expected["sem_seg"].argmax(0)).float().mean()
    assert agreement > 0.9
    relative = (scores - expected["sem_seg"]).norm() / expected["sem_seg"].norm()
    assert 0 < relative < 0.05  # bf16 products, not a float32 rerun
