"""Semantic TTA: every scale and flip is run, flipped outputs are flipped back, scores averaged."""

import pytest
import torch
import torch.nn.functional as F
from conftest import semask_cfg
from torch import nn

from semask.modeling.meta_arch import SemanticSegmentorWithTTA


class PixelModel(nn.Module):
    """A per-pixel 'segmenter': the scores are the image itself, resized to height x width."""

    def __init__(self):
        super().__init__()
        self.seen_sizes = []

    def forward(self, batched_inputs):
        results = []
        for x in batched_inputs:
            self.seen_sizes.append(tuple(x["image"].shape[-2:]))
            image = x["image"].float()[None]
            size = (x["height"], x["width"])
            results.append({"sem_seg": F.interpolate(image, size, mode="bilinear")[0]})
        return results


def _cfg(min_sizes, flip):
    cfg = semask_cfg()
    cfg.TEST.AUG.MIN_SIZES = min_sizes
    cfg.TEST.AUG.MAX_SIZE = 4000
    cfg.TEST.AUG.FLIP = flip
    return cfg


def _image():
    return torch.randint(
        0, 256, (3, 24, 36), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_flip_is_undone():
    model = PixelModel().eval()
    tta = SemanticSegmentorWithTTA(_cfg([24], flip=True), model)
    image = _image()
    (out,) = tta([{"image": image, "height": 24, "width": 36}])
    torch.testing.assert_close(out["sem_seg"], image.float())
    assert model.seen_sizes == [(24, 36), (24, 36)]


def test_scales_are_run_and_averaged():
    model = PixelModel().eval()
    tta = SemanticSegmentorWithTTA(_cfg([12, 24, 48], flip=True), model)
    image = _image()
    (out,) = tta([{"image": image, "height": 48, "width": 72}])
    assert sorted(set(model.seen_sizes)) == [(12, 18), (24, 36), (48, 72)]
    assert len(model.seen_sizes) == 6
    singles = []
    for size in [12, 24, 48]:
        (single,) = SemanticSegmentorWithTTA(_cfg([size], flip=False), PixelModel().eval())(
            [{"image": image, "height": 48, "width": 72}]
        )
        singles.append(single["sem_seg"])
    torch.testing.assert_close(out["sem_seg"], torch.stack(singles).mean(0), atol=1e-3, rtol=1e-4)


def test_height_width_default_to_image_and_training_is_refused():
    model = PixelModel().eval()
    (out,) = SemanticSegmentorWithTTA(_cfg([12], flip=False), model)([{"image": _image()}])
    assert out["sem_seg"].shape == (3, 24, 36)
    with pytest.raises(RuntimeError, match="eval"):
        SemanticSegmentorWithTTA(_cfg([12], flip=False), PixelModel().train())(
            [{"image": _image()}]
        )
