"""Sliding-window inference (TEST.SLIDE): window placement, overlap averaging, bounded memory, and
the SeMask meta-architectures, TTA and the predictor running through it."""

import math
import weakref

import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.modeling import build_model
from test_predictor import QUICKSTART_CONFIG, TINY_QUICKSTART
from test_semask_fpn import tiny_fpn_cfg
from torch.utils._python_dispatch import TorchDispatchMode

from semask.engine import build_cfg
from semask.engine.validation import ConfigError, validate_config
from semask.modeling.meta_arch import SemanticSegmentorWithTTA
from semask.modeling.meta_arch.sliding_window import SlidingWindow, window_boxes, window_starts
from semask.predictor import SeMaskPredictor


def test_windows_step_by_the_stride_and_the_last_one_ends_on_the_border():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]  # moved back from 9 to end at 11
    assert window_starts(8, 8, 5) == [0]
    assert window_starts(3, 4, 2) == [0]  # shorter than a crop: one window of 3
    assert window_boxes(3, 11, (4, 4), (3, 3)) == [
        (0, 0, 3, 4),
        (0, 3, 3, 7),
        (0, 6, 3, 10),
        (0, 7, 3, 11),
    ]


@pytest.mark.parametrize("size,crop,stride", [(37, 8, 5), (16, 16, 16), (20, 7, 7), (9, 12, 4)])
def test_windows_cover_every_pixel_and_stay_inside(size, crop, stride):
    covered = torch.zeros(size, dtype=torch.int64)
    for start in window_starts(size, crop, stride):
        assert 0 <= start and start + min(crop, size) <= size
        covered[start : start + min(crop, size)] += 1
    assert covered.min() >= 1


class KnownWindows:
    """Stand-in ``crop_scores``: channel 0 is the window's number (1, 2, ...), channel 1 the crop's
    first image channel; records the shape of every batch it gets."""

    def __init__(self):
        self.calls = []
        self.windows = 0

    def __call__(self, crops):
        self.calls.append(tuple(crops.shape))
        numbers = torch.arange(self.windows + 1, self.windows + len(crops) + 1).float()
        self.windows += len(crops)
        number_map = numbers.view(-1, 1, 1, 1).expand(-1, 1, *crops.shape[-2:])
        return torch.cat([number_map, crops[:, :1].float()], dim=1)


def test_overlapping_window_scores_are_averaged():
    # 4 x 6 image, 4 x 4 windows 2 apart: window 1 covers columns 0-3, window 2 columns 2-5
    image = torch.arange(6).float().expand(3, 4, 6)
    scores = SlidingWindow((4, 4), (2, 2), batch_size=1).scores(image, KnownWindows())
    torch.testing.assert_close(scores[0, 0], torch.tensor([1.0, 1.0, 1.5, 1.5, 2.0, 2.0]))
    torch.testing.assert_close(scores[1], image[0])  # each pixel is where its windows put it


def test_results_do_not_depend_on_the_batch_size_and_batches_are_bounded():
    image = torch.randint(0, 256, (3, 23, 31), dtype=torch.uint8)
    results = []
    for batch_size in (1, 3, 100):
        stand_in = KnownWindows()
        results.append(SlidingWindow((8, 10), (5, 7), batch_size).scores(image, stand_in))
        assert stand_in.windows == 4 * 4  # rows 0, 5, 10, 15; columns 0, 7, 14, 21
        assert all(call[0] <= batch_size and call[1:] == (3, 8, 10) for call in stand_in.calls)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
    torch.testing.assert_close(results[0], results[2], rtol=0, atol=0)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def test_memory_is_one_score_map_plus_one_batch_of_windows():
    """169 windows of 4 x 4 on a 16 x 16 image: holding all their scores would take 10x the map."""
    num_classes, height, width = 2, 16, 16
    alive = []

    def crop_scores(crops):
        assert all(ref() is None for ref in alive), "an earlier batch's scores are still held"
        out = KnownWindows()(crops)
        alive.append(weakref.ref(out))
        return out

    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    window = SlidingWindow((4, 4), (1, 1), batch_size=4)
    with LargestTensor() as largest:
        scores = window.scores(image, crop_scores)
    assert len(alive) == math.ceil(13 * 13 / 4)
    assert scores.shape == (num_classes, height, width)
    assert largest.largest <= num_classes * height * width


def fpn_model():
    torch.manual_seed(0)
    return build_model(tiny_fpn_cfg()).eval()


def mask2former_model():
    torch.manual_seed(0)
    return build_model(build_cfg(str(QUICKSTART_CONFIG), TINY_QUICKSTART)).eval()


def infer(model, image, sliding_window=None, **size):
    model.sliding_window = sliding_window
    with torch.no_grad():
        return model([{"image": image, **size}])[0]


@pytest.mark.parametrize("build", [fpn_model, mask2former_model], ids=["fpn", "mask2former"])
@pytest.mark.parametrize("crop", [(40, 56), (64, 64)], ids=["crop=image", "crop>image"])
def test_one_window_covering_the_image_is_whole_image_inference(build, crop):
    model = build()
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    whole = infer(model, image, height=60, width=84)
    slid = infer(model, image, SlidingWindow(crop, (32, 32), 1), height=60, width=84)
    assert set(slid) == {"sem_seg"} and slid["sem_seg"].shape == whole["sem_seg"].shape
    torch.testing.assert_close(slid["sem_seg"], whole["sem_seg"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("build", [fpn_model, mask2former_model], ids=["fpn", "mask2former"])
def test_a_real_model_averages_its_whole_image_answers_on_the_windows(build):
    model = build()
    image = torch.randint(0, 256, (3, 80, 112), dtype=torch.uint8)
    boxes = window_boxes(80, 112, (64, 64), (48, 48))
    assert boxes == [(0, 0, 64, 64), (0, 48, 64, 112), (16, 0, 80, 64), (16, 48, 80, 112)]
    total, count = torch.zeros(()), torch.zeros(1, 80, 112)
    for y0, x0, y1, x1 in boxes:
        total = total + torch.nn.functional.pad(
            infer(model, image[:, y0:y1, x0:x1])["sem_seg"], (x0, 112 - x1, y0, 80 - y1)
        )
        count[:, y0:y1, x0:x1] += 1
    for batch_size in (1, 3):
        slid = infer(model, image, SlidingWindow((64, 64), (48, 48), batch_size))
        torch.testing.assert_close(slid["sem_seg"], total / count, rtol=1e-5, atol=1e-5)


def test_test_time_augmentation_slides_every_copy():
    model = mask2former_model()
    model.sliding_window = SlidingWindow((24, 24), (16, 16), 2)
    cfg = semask_cfg()
    cfg.TEST.AUG.MIN_SIZES = [40]
    cfg.TEST.AUG.MAX_SIZE = 1000
    cfg.TEST.AUG.FLIP = True
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    with torch.no_grad():
        (tta,) = SemanticSegmentorWithTTA(cfg, model)([{"image": image}])
        plain = model([{"image": image}])[0]["sem_seg"]
        flipped = model([{"image": image.flip(-1)}])[0]["sem_seg"].flip(-1)
    torch.testing.assert_close(tta["sem_seg"], (plain + flipped) / 2, rtol=1e-5, atol=1e-5)


def test_the_config_switch_reaches_the_predictor():
    cfg = build_cfg(
        str(QUICKSTART_CONFIG),
        TINY_QUICKSTART
        + ["TEST.SLIDE.ENABLED", "True", "TEST.SLIDE.CROP_SIZE", "(64, 64)"]
        + ["TEST.SLIDE.STRIDE", "(48, 48)", "TEST.SLIDE.BATCH_SIZE", "2"],
    )
    predictor = SeMaskPredictor(cfg)
    assert predictor.model.sliding_window == SlidingWindow((64, 64), (48, 48), 2)
    image = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    prediction = predictor.predict(image)  # resized to 96 x 128: 2 x 3 windows of 64
    assert prediction.scores.shape == (7, 96, 128) and prediction.labels.shape == (150, 200)
    with pytest.raises(ConfigError, match=r"RETURN_PRIOR = True: must be False with TEST\.SLIDE"):
        SeMaskPredictor(cfg, return_priors=True)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["TEST.SLIDE.CROP_SIZE", "(0, 512)"], r"TEST\.SLIDE\.CROP_SIZE = \(0, 512\): must be 2"),
        (["TEST.SLIDE.STRIDE", "(512,)"], r"TEST\.SLIDE\.STRIDE = \(512,\): must be 2 integers"),
        (
            ["TEST.SLIDE.STRIDE", "(256, 600)"],
            r"TEST\.SLIDE\.STRIDE = \(256, 600\): must be at most TEST\.SLIDE\.CROP_SIZE",
        ),
        (["TEST.SLIDE.BATCH_SIZE", "0"], r"TEST\.SLIDE\.BATCH_SIZE = 0: must be an integer >= 1"),
        (
            ["TEST.SLIDE.ENABLED", "True", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True"],
            r"PANOPTIC_ON = True: must be False with TEST\.SLIDE\.ENABLED",
        ),
    ],
)
def test_slide_keys_are_checked_by_name(overrides, message):
    cfg = build_cfg(str(QUICKSTART_CONFIG), TINY_QUICKSTART + overrides)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, datasets=False)
