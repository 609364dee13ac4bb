"""End to end against the official fixtures (``tests/fixtures/mask2former``): SeMaskMaskFormer built
from the official merged config, official weights loaded strictly, called the Detectron2 way."""

import pytest
import torch
import torch.nn.functional as F
from conftest import semask_cfg
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import sem_seg_postprocess

from semask.data.targets import semantic_instances
from semask.modeling.meta_arch import SemanticSegmentorWithTTA
from semask.modeling.meta_arch.inference import semantic_inference

MODELS = ["micro_msdeform", "micro_msfapn"]
H, W = 75, 101  # the fixture image; padded to 96 x 128
K = 7  # classes


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
    image = torch.load(reference_dir / "input_75x101.pt")
    expected = torch.load(reference_dir / f"{name}_outputs.pt")
    (result,), raw = _run(model, [{"image": image, "height": H, "width": W}])
    assert result["sem_seg"].shape == (K, H, W)
    assert rel_err(result["sem_seg"], expected["sem_seg"]) < 1e-4
    assert rel_err(raw["pred_logits"], expected["pred_logits"]) < 1e-4
    assert rel_err(raw["pred_masks"], expected["pred_masks"]) < 1e-4
    aux = torch.stack([a["pred_logits"] for a in raw["aux_outputs"]])
    assert rel_err(aux, expected["aux_pred_logits"]) < 1e-4
    # prior outputs: the aggregated map and each stage's map, cropped to the image
    sem_prior = expected["sem_head_pred"][0, :, :H, :W]
    assert rel_err(result["sem_prior"], sem_prior) < 1e-4
    for stage, stride in [("res2", 4), ("res3", 8), ("res4", 16), ("res5", 32)]:
        reference = expected["cls_outputs"][stage]
        h, w = -(-H // stride), -(-W // stride)
        assert rel_err(result["stage_priors"][stage], reference[0, :, :h, :w]) < 1e-4


def test_output_resized_to_requested_size(reference_dir):
    model = _model(reference_dir, "micro_msdeform")
    image = torch.load(reference_dir / "input_75x101.pt")
    (full,), _ = _run(model, [{"image": image, "height": H, "width": W}])
    (small,), _ = _run(model, [{"image": image, "height": 40, "width": 52}])
    expected = F.interpolate(full["sem_seg"][None], (40, 52), mode="bilinear")[0]
    torch.testing.assert_close(small["sem_seg"], expected, rtol=1e-5, atol=1e-6)


def test_batch_of_different_sizes(reference_dir):
    """One ImageList padded to the largest image, then to 32. The largest image's output equals its
    output alone (same padding); the smaller one is cropped and resized back to its own size (its
    scores differ from a run alone, where it is padded less)."""
    model = _model(reference_dir, "micro_msdeform")
    large = torch.load(reference_dir / "input_75x101.pt")
    small = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    (alone,), _ = _run(model, [{"image": large, "height": H, "width": W}])
    batched, raw = _run(model, [{"image": large, "height": H, "width": W}, {"image": small}])
    assert raw["pred_masks"].shape[-2:] == (24, 32)  # 96 x 128 padded batch, stride 4
    assert rel_err(batched[0]["sem_seg"], alone["sem_seg"]) < 1e-5
    assert batched[1]["sem_seg"].shape == (K, 50, 70)
    masks = F.interpolate(raw["pred_masks"], (96, 128), mode="bilinear", align_corners=False)
    scores = semantic_inference(raw["pred_logits"][1], masks[1])
    torch.testing.assert_close(batched[1]["sem_seg"], sem_seg_postprocess(scores, (50, 70), 50, 70))


def test_training_losses_have_official_keys(reference_dir):
    model = _model(reference_dir, "micro_msdeform").train()
    image = torch.load(reference_dir / "input_75x101.pt")
    sem_seg = torch.randint(0, K, (H, W))
    sem_seg[:20] = 255
    torch.manual_seed(0)
    losses = model([{"image": image, "sem_seg": sem_seg, "instances": semantic_instances(sem_seg)}])
    expected = {"loss_ce", "loss_mask", "loss_dice", "loss_cate"}
    for i in range(3):
        expected |= {f"loss_ce_{i}", f"loss_mask_{i}", f"loss_dice_{i}"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    unlabelled = torch.full((H, W), 255)
    empty = model(
        [{"image": image, "sem_seg": unlabelled, "instances": semantic_instances(unlabelled)}]
    )
    assert set(empty) == expected and all(torch.isfinite(v) for v in empty.values())
    assert empty["loss_cate"].item() == 0.0 and empty["loss_mask"].item() == 0.0
    with pytest.raises(KeyError, match="sem_seg"):
        model([{"image": image, "instances": semantic_instances(sem_seg)}])


def test_panoptic_and_instance_outputs(reference_dir):
    model = _model(reference_dir, "micro_msdeform")
    model.panoptic_on = model.instance_on = True
    model.object_mask_threshold = 0.0
    model.thing_ids = frozenset(range(3))
    image = torch.load(reference_dir / "input_75x101.pt")
    (result,), raw = _run(model, [{"image": image, "height": 40, "width": 52}])
    panoptic, segments = result["panoptic_seg"]
    assert panoptic.shape == (40, 52) and result["sem_seg"].shape == (K, 40, 52)
    assert sorted(int(i) for i in panoptic.unique() if i > 0) == [s["id"] for s in segments]
    instances = result["instances"]
    assert instances.image_size == (40, 52) and len(instances) <= 8 * K
    assert all(int(c) < 3 for c in instances.pred_classes)


def test_tta_single_scale_equals_plain_inference(reference_dir):
    model = _model(reference_dir, "micro_msdeform")
    cfg = semask_cfg()
    cfg.TEST.AUG.MIN_SIZES = [H]
    cfg.TEST.AUG.MAX_SIZE = 1000
    cfg.TEST.AUG.FLIP = False
    image = torch.load(reference_dir / "input_75x101.pt")
    inputs = [{"image": image, "height": H, "width": W}]
    (tta,) = SemanticSegmentorWithTTA(cfg, model)(inputs)
    (plain,), _ = _run(model, inputs)
    torch.testing.assert_close(tta["sem_seg"], plain["sem_seg"])
