"""Resizing of model outputs: padded score maps to the requested output size
(:func:`postprocess_to_output`), label maps by nearest neighbour (:func:`resize_nearest`), and
per-class score maps bilinearly a band of rows at a time, in bounded memory.

The result equals ``F.interpolate(mode="bilinear", align_corners=False)`` (the rule of detectron2's
``sem_seg_postprocess``), row for row: columns are interpolated by ``F.interpolate`` itself, rows
with PyTorch's CPU source indices and weights, blended as its kernel does (``addcmul``: one
fused multiply-add where the CPU has one).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess

CHUNK_ELEMENTS = 1 << 22


def postprocess_to_output(
    result: torch.Tensor, image_size: Tuple[int, int], height: int, width: int
) -> torch.Tensor:
    """detectron2's ``sem_seg_postprocess``: [C, Hp, Wp] -> the unpadded ``image_size`` crop,
    resized bilinearly to [C, height, width]; the resize (a copy at scale 1) only when the sizes
    differ."""
    cropped = result[:, : image_size[0], : image_size[1]]
    if tuple(cropped.shape[-2:]) == (height, width):
        return cropped.contiguous()
    return sem_seg_postprocess(result, image_size, height, width)


def resize_nearest(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``tensor`` [..., h, w] (any dtype) resized to [..., height, width]: each pixel takes the
    value of source pixel (floor(y h / height), floor(x w / width)), as OpenCV's nearest does."""
    rows = torch.arange(height) * tensor.shape[-2] // height
    cols = torch.arange(width) * tensor.shape[-1] // width
    return tensor.index_select(-2, rows).index_select(-1, cols)


def bilinear_source_rows(
    in_size: int,
    out_size: int,
    start: int,
    stop: int,
    align_corners: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source rows (low, high) [n] and their weights ([n, 1] each) of output rows
    ``start..stop-1`` when PyTorch's bilinear resize takes ``in_size`` rows to ``out_size``,
    computed as its CPU kernel computes them for ``dtype`` (float32 scale and positions, float64
    for float64 maps)."""
    position = torch.arange(start, stop, dtype=torch.float64)
    exact = dtype == torch.float64
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
        scale = in_size / out_size
    if not exact:  # the float32 scale, held exactly in a Python float
        scale = float(torch.tensor(scale, dtype=torch.float32))
    if align_corners:
        source = position * scale
    else:
        source = ((position + 0.5) * scale - 0.5).clamp(min=0)
    source = source if exact else source.float()
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    weight_high = (source - low.to(source.dtype)).to(dtype)
    return low, high, (1 - weight_high)[:, None], weight_high[:, None]


def bilinear_matrix(
    in_size: int, out_size: int, align_corners: bool = False, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[out_size, in_size] (CPU, weights of ``dtype``): PyTorch's bilinear resize of one axis
    from ``in_size`` to ``out_size`` as a matrix (:func:`bilinear_source_rows`), two weights
    per row (summed where both source rows are the same)."""
    low, high, weight_low, weight_high = bilinear_source_rows(
        in_size, out_size, 0, out_size, align_corners, dtype
    )
    rows = torch.arange(out_size)
    matrix = torch.zeros(out_size, in_size, dtype=weight_low.dtype)
    matrix.index_put_((rows, low), weight_low[:, 0], accumulate=True)
    matrix.index_put_((rows, high), weight_high[:, 0], accumulate=True)
    return matrix


def _source_band(
    scores: torch.Tensor, low: torch.Tensor, high: torch.Tensor, width: int
) -> Tuple[torch.Tensor, int]:
    """The source rows ``low.min()..high.max()`` of ``scores`` [K, h, w] with their columns
    interpolated to ``width`` by ``F.interpolate`` (float32 [K, r, width]), and the first row."""
    first, last = int(low.min()), int(high.max())
    band = scores[None, :, first : last + 1].float()
    band = F.interpolate(band, size=(band.shape[2], width), mode="bilinear", align_corners=False)
    return band[0], first


def bilinear_rows(
    scores: torch.Tensor, height: int, width: int, start: int, stop: int
) -> torch.Tensor:
    """Rows ``start..stop-1`` [K, stop - start, width] of ``scores`` [K, h, w] (float32) upsampled
    bilinearly to [K, height, width]."""
    low, high, weight_low, weight_high = bilinear_source_rows(scores.shape[1], height, start, stop)
    band, first = _source_band(scores, low, high, width)
    return torch.addcmul(band[:, high - first] * weight_high, band[:, low - first], weight_low)


def upsampled_argmax(
    scores: torch.Tensor, height: int, width: int, chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """``argmax(0)`` [height, width] int64 of ``scores`` [K, h, w] upsampled bilinearly to
    [K, height, width], in bands of about ``chunk_elements`` column-interpolated source values.

    An output pixel whose four source neighbours share their argmax class gets that class: a
    bilinear blend with non-negative weights, rounded monotonically, cannot rank another class
    higher (at most an exact float tie, which the full computation may break towards a lower
    class id). Only the other pixels, along class boundaries, are blended over all K classes.
    """
    num_classes, h, w = scores.shape
    coarse = scores.argmax(dim=0)
    col_low, col_high, _, _ = bilinear_source_rows(w, width, 0, width)
    labels = torch.empty((height, width), dtype=torch.int64)
    source_rows = max(chunk_elements // max(num_classes * width, 1), 1)
    rows = max(int(source_rows * height / h) - 1, 1)
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        low, high, weight_low, weight_high = bilinear_source_rows(h, height, start, stop)
        corners = [coarse[low][:, col_low], coarse[low][:, col_high]]
        corners += [coarse[high][:, col_low], coarse[high][:, col_high]]
        band_labels = corners[0]
        boundary = (corners[1] != band_labels) | (corners[2] != band_labels)
        boundary |= corners[3] != band_labels
        ys, xs = boundary.nonzero(as_tuple=True)
        if len(ys):
            band, first = _source_band(scores, low, high, width)
            band = band.permute(1, 2, 0).contiguous()  # [r, width, K]: one pixel's classes in a row
            blended = torch.addcmul(
                band[high[ys] - first, xs] * weight_high[ys],
                band[low[ys] - first, xs],
                weight_low[ys],
            )
            band_labels[ys, xs] = blended.argmax(dim=1)
        labels[start:stop] = band_labels
    return labels
