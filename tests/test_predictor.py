"""SeMaskPredictor: image conversion, strict weight loading, labels/scores/priors of one image."""

import logging
from typing import List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT, semask_cfg
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from test_checkpoint import write_malicious
from torch import nn

from semask import predictor as predictor_module
from semask.checkpoint import UnsafeCheckpointError, WeightsError
from semask.engine import build_cfg
from semask.modeling.semantic_prior import prior_settings
from semask.predictor import SeMaskPredictor, as_bgr_uint8

NUM_CLASSES = 3


@META_ARCH_REGISTRY.register()
class ContractTestSegmenter(nn.Module):
    """Follows the SeMask meta-architecture output contract with a per-pixel linear classifier.

    The classifier starts as the identity on RGB, so the label of a pixel is its strongest colour
    channel (0 red, 1 green, 2 blue); the priors are average-pooled logits at strides 4..32.
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(3, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 1)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.weight[:3, :, 0, 0] = torch.eye(3)[: cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES]
            self.classifier.bias.zero_()
        self.return_prior = prior_settings(cfg).return_prior

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def forward(self, batched_inputs):
        outputs = []
        for item in batched_inputs:
            logits = self.classifier(item["image"].to(self.device).float()[None] / 255)
            size = (item["height"], item["width"])
            result = {"sem_seg": F.interpolate(logits, size, mode="bilinear")[0]}
            if self.return_prior:
                result["sem_prior"] = result["sem_seg"] * 2
                result["stage_priors"] = {
                    f"res{i + 2}": F.avg_pool2d(logits, 2 ** (i + 2), ceil_mode=True)[0]
                    for i in range(4)
                }
            outputs.append(result)
        return outputs


@META_ARCH_REGISTRY.register()
class PriorlessTestSegmenter(ContractTestSegmenter):
    """Ignores RETURN_PRIOR, like a model without semantic layers."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        self.return_prior = False


def contract_cfg(**overrides) -> CfgNode:
    cfg = semask_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ContractTestSegmenter"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = NUM_CLASSES
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TEST = 32
    cfg.INPUT.MAX_SIZE_TEST = 64
    cfg.DATASETS.TEST = ()
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def red_blue_image(height: int = 24, width: int = 40) -> np.ndarray:
    """BGR image: left half red, right half blue."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2, 2] = 255
    image[:, width // 2 :, 0] = 255
    return image


def test_as_bgr_uint8_converts_grayscale_alpha_16_bit_and_float():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(as_bgr_uint8(gray), np.repeat(gray[:, :, None], 3, axis=2))
    assert np.array_equal(as_bgr_uint8(gray[:, :, None]), as_bgr_uint8(gray))
    bgra = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    assert np.array_equal(as_bgr_uint8(bgra), bgra[:, :, :3])
    deep = np.array([[0, 257, 65535]], dtype=np.uint16)
    assert as_bgr_uint8(deep)[0, :, 0].tolist() == [0, 1, 255]
    assert as_bgr_uint8(np.full((2, 2, 3), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        as_bgr_uint8(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="int32"):
        as_bgr_uint8(np.zeros((2, 2, 3), np.int32))


def test_predict_returns_labels_at_input_size_and_scores_at_the_test_size():
    predictor = SeMaskPredictor(contract_cfg())
    image = red_blue_image()
    prediction = predictor.predict(image)
    assert prediction.scores.shape == (NUM_CLASSES, 32, 53)  # MIN_SIZE_TEST 32
    assert prediction.labels.shape == (24, 40) and prediction.labels.dtype == torch.int64
    upsampled = F.interpolate(prediction.scores[None], (24, 40), mode="bilinear")[0]
    assert torch.equal(prediction.labels, upsampled.argmax(dim=0))
    assert predictor(image)["sem_seg"].shape == (NUM_CLASSES, 24, 40)  # the raw call: full size
    assert (prediction.labels[:, :18] == 0).all() and (prediction.labels[:, 22:] == 2).all()
    assert prediction.sem_prior is None and prediction.stage_priors == {}
    gray = predictor.predict(image[:, :, 0].astype(np.uint16) * 257)
    assert gray.labels.shape == (24, 40)


def test_predict_returns_priors_when_asked():
    predictor = SeMaskPredictor(contract_cfg(), return_priors=True)
    prediction = predictor.predict(red_blue_image(32, 64))
    assert torch.allclose(prediction.sem_prior, prediction.scores * 2)
    assert list(prediction.stage_priors) == ["res2", "res3", "res4", "res5"]
    # MIN_SIZE_TEST 32 keeps 32x64; the stage priors are at strides 4..32 of it.
    shapes = [tuple(prior.shape) for prior in prediction.stage_priors.values()]
    assert shapes == [(3, 8, 16), (3, 4, 8), (3, 2, 4), (3, 1, 2)]
    assert prediction.stage_priors["res5"].argmax(dim=0).tolist() == [[0, 2]]


def test_priors_asked_from_a_model_without_priors_is_an_error():
    predictor = SeMaskPredictor(
        contract_cfg(**{"MODEL.META_ARCHITECTURE": "PriorlessTestSegmenter"}), return_priors=True
    )
    with pytest.raises(KeyError, match="PriorlessTestSegmenter returned no 'sem_prior'"):
        predictor.predict(red_blue_image())


def test_metadata_falls_back_to_generated_names(caplog):
    with caplog.at_level(logging.WARNING):
        predictor = SeMaskPredictor(contract_cfg())
    assert predictor.metadata.stuff_classes == ["class 0", "class 1", "class 2"]
    assert len(predictor.metadata.stuff_colors) == NUM_CLASSES
    assert "names 0 of 3 classes" in caplog.text


def test_weights_are_loaded(tmp_path):
    model = ContractTestSegmenter(contract_cfg())
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
    torch.save({"model": model.state_dict()}, tmp_path / "flipped.pth")
    predictor = SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(tmp_path / "flipped.pth")}))
    assert torch.equal(predictor.model.classifier.weight, model.classifier.weight)
    # The flipped classifier calls red 2 and blue 0.
    labels = predictor.predict(red_blue_image()).labels
    assert (labels[:, :18] == 2).all() and (labels[:, 22:] == 0).all()


def test_missing_weights_fail_before_the_model_is_built(tmp_path, monkeypatch):
    def no_build(cfg):
        raise AssertionError("the model was built before the weights were checked")

    monkeypatch.setattr(predictor_module, "build_model", no_build)
    missing = tmp_path / "absent.pth"
    with pytest.raises(WeightsError, match=f"MODEL.WEIGHTS '{missing}' is no file"):
        SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(missing)}))


def test_unreadable_weights_are_named(tmp_path):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("not a checkpoint")
    with pytest.raises(
        WeightsError, match="notes.pth': checkpoint .*notes.pth is not a readable checkpoint"
    ):
        SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(not_a_checkpoint)}))


def test_mismatched_weights_are_an_error(tmp_path):
    wrong_shape = {"classifier.weight": torch.zeros(5, 3, 1, 1), "classifier.bias": torch.zeros(5)}
    torch.save({"model": wrong_shape}, tmp_path / "five_classes.pth")
    with pytest.raises(
        WeightsError,
        match=r"five_classes.pth does not fit .* classifier.weight: checkpoint \(5, 3, 1, 1\)",
    ):
        SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(tmp_path / "five_classes.pth")}))
    torch.save({"model": {"other.weight": torch.zeros(1)}}, tmp_path / "other_model.pth")
    with pytest.raises(WeightsError, match="missing classifier.weight"):
        SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(tmp_path / "other_model.pth")}))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_weights_that_would_run_code_are_refused_without_running_it(tmp_path, suffix):
    weights = write_malicious(tmp_path / f"evil{suffix}", tmp_path / "ran")
    with pytest.raises(UnsafeCheckpointError, match=f"MODEL.WEIGHTS '{weights}': .*refused"):
        SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(weights)}))
    assert not (tmp_path / "ran").exists()


def micro_cfg(reference_dir) -> CfgNode:
    """The official micro SeMask-Mask2Former config; test resizing keeps the 75x101 input."""
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / "micro_msdeform_config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = str(reference_dir / "micro_msdeform.pth")
    cfg.INPUT.MIN_SIZE_TEST = 75
    return cfg


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.slow
def test_predictor_reproduces_the_official_micro_model(reference_dir):
    predictor = SeMaskPredictor(micro_cfg(reference_dir), return_priors=True)
    reference = torch.load(reference_dir / "micro_msdeform_outputs.pt")
    image_rgb = torch.load(reference_dir / "input_75x101.pt").permute(1, 2, 0).numpy()
    prediction = predictor.predict(np.ascontiguousarray(image_rgb[:, :, ::-1]))
    assert relative_error(prediction.scores, reference["sem_seg"]) < 1e-4
    assert torch.equal(prediction.labels, prediction.scores.argmax(dim=0))
    # Priors are cropped to the image: 75x101 covers 19x26 of the padded 24x32 stride-4 map.
    assert relative_error(prediction.sem_prior, reference["sem_head_pred"][0, :, :75, :101]) < 1e-4
    assert set(prediction.stage_priors) == {"res2", "res3", "res4", "res5"}
    for name, prior in prediction.stage_priors.items():
        official = reference["cls_outputs"][name][0]
        stride = 2 ** (int(name[-1]))
        assert prior.shape == (7, -(-75 // stride), -(-101 // stride))
        assert relative_error(prior, official[:, : prior.shape[1], : prior.shape[2]]) < 1e-4
    assert predictor.metadata.stuff_classes[:2] == ["wall", "building"]


def test_official_weights_do_not_fit_another_class_count(reference_dir):
    cfg = micro_cfg(reference_dir)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 150
    with pytest.raises(WeightsError, match=r"\(7, 8\) vs model \(150, 8\)"):
        SeMaskPredictor(cfg)


QUICKSTART_CONFIG = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
TINY_QUICKSTART = [
    "MODEL.SWIN.EMBED_DIM",
    "16",
    "MODEL.SWIN.DEPTHS",
    "[1, 1, 1, 1]",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM",
    "32",
    "MODEL.MASK_FORMER.HIDDEN_DIM",
    "32",
    "MODEL.MASK_FORMER.DEC_LAYERS",
    "2",
    "MODEL.DEVICE",
    "cpu",
]


def tiny_semask_weights(path) -> List[str]:
    """Write random weights of a tiny quick-start SeMask model to ``path``; its config overrides
    (MODEL.WEIGHTS included) for the quick-start config."""
    torch.manual_seed(0)
    model = build_model(build_cfg(str(QUICKSTART_CONFIG), TINY_QUICKSTART))
    torch.save({"model": model.state_dict()}, path)
    return TINY_QUICKSTART + ["MODEL.WEIGHTS", str(path)]


def test_a_real_semask_model_labels_a_large_image_at_full_size(tmp_path):
    cfg = build_cfg(str(QUICKSTART_CONFIG), tiny_semask_weights(tmp_path / "tiny.pth"))
    predictor = SeMaskPredictor(cfg, return_priors=True)
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    prediction = predictor.predict(image)
    # MIN_SIZE_TEST 96 resizes 300x500 to 96x160: every map but the labels stays at that size.
    assert prediction.scores.shape == prediction.sem_prior.shape == (7, 96, 160)
    assert prediction.stage_priors["res5"].shape == (7, 3, 5)
    assert prediction.labels.shape == (300, 500)
    full = predictor(image)["sem_seg"]  # what the model returns at the image's size
    assert full.shape == (7, 300, 500)
    differ = prediction.labels != full.argmax(dim=0)
    top2 = full.topk(2, dim=0).values
    assert (top2[0] - top2[1])[differ].eq(0).all()  # only exact ties may differ


def test_config_values_the_model_cannot_work_with_fail_by_key_before_building():
    cfg = build_cfg(str(QUICKSTART_CONFIG), TINY_QUICKSTART + ["MODEL.SWIN.WINDOW_SIZE", "0"])
    with pytest.raises(ValueError, match=r"MODEL\.SWIN\.WINDOW_SIZE = 0: must be an integer >= 1"):
        SeMaskPredictor(cfg)
