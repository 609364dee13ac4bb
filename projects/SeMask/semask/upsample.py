"""Bilinear upsampling of per-class score maps a band of rows at a time, in bounded memory.

The result equals ``F.interpolate(mode="bilinear", align_corners=False)`` (the rule of detectron2's
``sem_seg_postprocess``), row for row: columns are interpolated by ``F.interpolate`` itself, rows
with PyTorch's CPU source indices and weights, blended as its kernel does (``addcmul``: one
fused multiply-add where the CPU has one).
"""

from typing import Tuple

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 22


def _row_weights(
    in_size: int, out_size: int, start: int, stop: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source rows (low, high) [n] and their weights (float32 [n, 1] each) of output rows
    ``start..stop-1`` when ``in_size`` rows are resized to ``out_size``."""
    scale = (torch.tensor(in_size, dtype=torch.float32) / out_size).double()
    position = torch.arange(start, stop, dtype=torch.float64)
    source = ((position + 0.5) * scale - 0.5).float().clamp(min=0)
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    weight_high = source - low.float()
    return low, high, (1 - weight_high)[:, None], weight_high[:, None]


def bilinear_rows(
    scores: torch.Tensor, height: int, width: int, start: int, stop: int
) -> torch.Tensor:
    """Rows ``start..stop-1`` [K, stop - start, width] of ``scores`` [K, h, w] (float32) upsampled
    bilinearly to [K, height, width]."""
    low, high, weight_low, weight_high = _row_weights(scores.shape[1], height, start, stop)
    first, last = int(low.min()), int(high.max())
    band = scores[None, :, first : last + 1].float()
    band = F.interpolate(band, size=(band.shape[2], width), mode="bilinear", align_corners=False)[0]
    return torch.addcmul(band[:, high - first] * weight_high, band[:, low - first], weight_low)


def upsampled_argmax(
    scores: torch.Tensor, height: int, width: int, chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """``argmax(0)`` [height, width] int64 of ``scores`` [K, h, w] upsampled bilinearly to
    [K, height, width], computed a band of about ``chunk_elements`` upsampled values at a time."""
    labels = torch.empty((height, width), dtype=torch.int64)
    rows = max(chunk_elements // max(scores.shape[0] * width, 1), 1)
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        labels[start:stop] = bilinear_rows(scores, height, width, start, stop).argmax(dim=0)
    return labels
