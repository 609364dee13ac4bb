"""End to end against the official fixtures: SeMaskMaskFormer built from the official merged config,
official weights loaded strictly, called the Detectron2 way."""

import pytest
import torch
import torch.nn.functional as F
from conftest import semask_cfg
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import sem_seg_postprocess

from semask.modeling.meta_arch import SemanticSegmentorWithTTA
from semask.modeling.meta_arch.inference import semantic_inference

MODELS = ["micro_msdeform", "micro_msfapn"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _model(reference_dir, name, return_prior=False):
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / f"{name}_config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.MASK_FORMER.TEST.RETURN_PRIOR = return_prior
    model = build_model(cfg)
    model.load_state_dict(torch.load(reference_dir / f"{name}.pth"), strict=True)
    return model.eval()


def _run(model, inputs):
    captured = {}
    handle = model.sem_seg_head.register_forward_hook(lambda m, i, out: captured.update(out))
    with torch.no_grad():
        results = model(inputs)
    handle.remove()
    return results, captured


@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_official(reference_dir, name):
    model = _model(reference_dir, name, return_prior=True)
    image = torch.load(reference_dir / "input_200x264.pt")
    expected = torch.load(reference_dir / f"{name}_outputs.pt")
    (result,), raw = _run(model, [{"image": image, "height": 200, "width": 264}])
    assert result["sem_seg"].shape == (19, 200, 264)
    assert rel_err(result["sem_seg"], expected["sem_seg"]) < 1e-4
    assert rel_err(raw["pred_logits"], expected["pred_logits"]) < 1e-4
    assert rel_err(raw["pred_masks"], expected["pred_masks"]) < 1e-4
    aux = torch.stack([a["pred_logits"] for a in raw["aux_outputs"]])
    assert rel_err(aux, expected["aux_pred_logits"]) < 1e-4
    # prior outputs: the aggregated map and each stage's map, cropped to the image
    sem_prior = expected["sem_head_pred"][0, :, :200, :264]
    assert rel_err(result["sem_prior"], sem_prior) < 1e-4
    for stage, stride in [("res2", 4), ("res3", 8), ("res4", 16), ("res5", 32)]:
        reference = expected["cls_outputs"][stage]
        h, w = -(-200 // stride), -(-264 // stride)
        assert rel_err(result["stage_priors"][stage], reference[0, :, :h, :w]) < 1e-4


def test_output_resized_to_requested_size(reference_dir):
    model = _model(reference_dir, "micro_msdeform")
    image = torch.load(reference_dir / "input_200x264.pt")
    (full,), _ = _run(model, [{"image": image, "height": 200, "width": 264}])
    (small,), _ = _run(model, [{"image": image, "height": 100, "width": 132}])
    expected = F.interpolate(full["sem_seg"][None], (100, 132), mode="bilinear")[0]
    torch.testing.assert_close(small["sem_seg"], expected, rtol=1e-5, atol=1e-6)


def test_batch_of_different_sizes(reference_dir):
    """One ImageList padded to the largest image, then to 32. The largest image's output equals its
    output alone (same padding); the smaller one is cropped and resized back to its own size (its
    scores differ from a run alone, where it is padded less)."""
    model = _model(reference_dir, "micro_msdeform")
    large = torch.load(reference_dir / "input_200x264.pt")
    small = torch.randint(0, 256, (3, 150, 200), dtype=torch.uint8)
    (alone,), _ = _run(model, [{"image": large, "height": 200, "width": 264}])
    batched, raw = _run(model, [{"image": large, "height": 200, "width": 264}, {"image": small}])
    assert raw["pred_masks"].shape[-2:] == (56, 72)  # 224 x 288 padded batch, stride 4
    assert rel_err(batched[0]["sem_seg"], alone["sem_seg"]) < 1e-5
    assert batched[1]["sem_seg"].shape == (19, 150, 200)
    masks = F.interpolate(raw["pred_masks"], (224, 288), mode="bilinear", align_corners=False)
    scores = semantic_inference(raw["pred_logits"][1], masks[1])
    torch.testing.assert_close(
        batched[1]["sem_seg"], sem_seg_postprocess(scores, (150, 200), 150, 200)
    )


def test_training_losses_have_official_keys(reference_dir):
    model = _model(reference_dir, "micro_msdeform").train()
    image = torch.load(reference_dir / "input_200x264.pt")
    sem_seg = torch.randint(0, 19, (200, 264))
    sem_seg[:20] = 255
    torch.manual_seed(0)
    losses = model([{"image": image, "sem_seg": sem_seg}])
    expected = {"loss_ce", "loss_mask", "loss_dice", "loss_cate"}
    for i in range(3):
        expected |= {f"loss_ce_{i}", f"loss_mask_{i}", f"loss_dice_{i}"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    empty = model([{"image": image, "sem_seg": torch.full((200, 264), 255)}])
    assert set(empty) == expected and all(torch.isfinite(v) for v in empty.values())
    assert empty["loss_cate"].item() == 0.0 and empty["loss_mask"].item() == 0.0
    with pytest.raises(KeyError, match="sem_seg"):
        model([{"image": image}])


def test_panoptic_and_instance_outputs(reference_dir):
    model = _model(reference_dir, "micro_msdeform")
    model.panoptic_on = model.instance_on = True
    model.object_mask_threshold = 0.0
    model.thing_ids = frozenset(range(10))
    image = torch.load(reference_dir / "input_200x264.pt")
    (result,), raw = _run(model, [{"image": image, "height": 100, "width": 132}])
    panoptic, segments = result["panoptic_seg"]
    assert panoptic.shape == (100, 132) and result["sem_seg"].shape == (19, 100, 132)
    assert sorted(int(i) for i in panoptic.unique() if i > 0) == [s["id"] for s in segments]
    instances = result["instances"]
    assert instances.image_size == (100, 132) and len(instances) <= 16 * 19
    assert all(int(c) < 10 for c in instances.pred_classes)


def test_tta_single_scale_equals_plain_inference(reference_dir):
    model = _model(reference_dir, "micro_msdeform")
    cfg = semask_cfg()
    cfg.TEST.AUG.MIN_SIZES = [200]
    cfg.TEST.AUG.MAX_SIZE = 1000
    cfg.TEST.AUG.FLIP = False
    image = torch.load(reference_dir / "input_200x264.pt")
    inputs = [{"image": image, "height": 200, "width": 264}]
    (tta,) = SemanticSegmentorWithTTA(cfg, model)(inputs)
    (plain,), _ = _run(model, inputs)
    torch.testing.assert_close(tta["sem_seg"], plain["sem_seg"])
