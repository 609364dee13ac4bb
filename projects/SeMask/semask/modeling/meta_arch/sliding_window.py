"""Sliding-window inference (``TEST.SLIDE``), mmseg's ``slide`` test mode, for every SeMask model.

The image, already at the test resize, is covered by windows of ``crop_size`` whose corners are
``stride`` apart; a window that would cross the bottom or right border is moved back to end on it,
and a side shorter than the crop gets one window of that side's length (no padding). The windows
go through the model in batches of ``batch_size``, each returning its scores at its own size; the
scores are summed into one [K, H, W] map, divided by the number of windows covering each pixel, and
only then resized to the requested output size. At most one batch of window scores is alive at a
time, so memory grows with K x H x W, not with the number of windows.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import CfgNode

from ...upsample import postprocess_to_output
from .inference import output_size

Box = Tuple[int, int, int, int]
# Scores of a batch of windows: uint8/float [B, 3, h, w] (unnormalised) -> [B, K, h, w].
CropScores = Callable[[torch.Tensor], torch.Tensor]


def window_starts(size: int, crop: int, stride: int) -> List[int]:
    """First indices of the windows of ``crop`` along a side of ``size``, ``stride`` apart, the
    last one moved back to end at ``size`` (one window at 0 when ``size <= crop``)."""
    count = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(count)]


def window_boxes(
    height: int, width: int, crop_size: Tuple[int, int], stride: Tuple[int, int]
) -> List[Box]:
    """The windows ``(y0, x0, y1, x1)`` covering an image of ``height`` x ``width``, row by row.

    Every window is ``min(crop_h, height)`` x ``min(crop_w, width)``, so a batch of them stacks.
    """
    rows = window_starts(height, crop_size[0], stride[0])
    cols = window_starts(width, crop_size[1], stride[1])
    crop_h, crop_w = min(crop_size[0], height), min(crop_size[1], width)
    return [(y, x, y + crop_h, x + crop_w) for y in rows for x in cols]


def _add_windows(
    total: Optional[torch.Tensor], count: torch.Tensor, scores: torch.Tensor, boxes: Sequence[Box]
) -> torch.Tensor:
    """Add window ``scores`` [B, K, h, w] at ``boxes`` into ``total`` [K, H, W] (made on the first
    call) and 1 into ``count`` [1, H, W]; ``total``. The batch's scores die when this returns."""
    if total is None:
        total = scores.new_zeros((scores.shape[1], *count.shape[1:]))
    for window, (y0, x0, y1, x1) in zip(scores, boxes):
        total[:, y0:y1, x0:x1] += window
        count[:, y0:y1, x0:x1] += 1
    return total


@dataclass(frozen=True)
class SlidingWindow:
    """Windows of ``crop_size`` (h, w), ``stride`` (h, w) apart, run ``batch_size`` at a time."""

    crop_size: Tuple[int, int]
    stride: Tuple[int, int]
    batch_size: int

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Optional["SlidingWindow"]:
        """The windows of ``TEST.SLIDE``, or None when ``TEST.SLIDE.ENABLED`` is False."""
        slide = cfg.TEST.SLIDE
        if not slide.ENABLED:
            return None
        return cls(tuple(slide.CROP_SIZE), tuple(slide.STRIDE), slide.BATCH_SIZE)

    def scores(self, image: torch.Tensor, crop_scores: CropScores) -> torch.Tensor:
        """Scores [K, H, W] of ``image`` [3, H, W]: ``crop_scores`` of its windows, averaged
        where windows overlap."""
        height, width = image.shape[-2:]
        boxes = window_boxes(height, width, self.crop_size, self.stride)
        total: Optional[torch.Tensor] = None
        count = torch.zeros((1, height, width), device=image.device)
        for first in range(0, len(boxes), self.batch_size):
            batch = boxes[first : first + self.batch_size]
            crops = torch.stack([image[:, y0:y1, x0:x1] for y0, x0, y1, x1 in batch])
            total = _add_windows(total, count, crop_scores(crops), batch)
        return total.div_(count.to(total))

    def __call__(
        self, batched_inputs: Sequence[Dict], crop_scores: CropScores
    ) -> List[Dict[str, torch.Tensor]]:
        """Per input (``image`` [3, H, W], optional ``height``/``width``) its ``sem_seg``
        [K, height, width]: the window average, resized bilinearly to the output size."""
        results = []
        for x in batched_inputs:
            image_size = tuple(x["image"].shape[-2:])
            scores = self.scores(x["image"], crop_scores)
            height, width = output_size(x, image_size)
            results.append({"sem_seg": postprocess_to_output(scores, image_size, height, width)})
        return results
