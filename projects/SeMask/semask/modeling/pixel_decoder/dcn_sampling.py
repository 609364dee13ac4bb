"""Modulated deformable convolution for inference on the CPU: bilinear sampling and one product.

torchvision's CPU ``deform_conv2d`` fills its column matrix one value at a time (FaPN's 3 x 3 DCN
at 128 x 128 x 256: about 0.7 s of a 2 s eval on a 2-core EPYC). Here the columns of a band of
output rows are one ``grid_sample`` at every (deformable group, kernel point, output pixel)
location, scaled by the modulation mask, and the convolution is one matrix product with the
weight, in oneDNN (:func:`..onednn_linear.matmul`). The values are torchvision's (bilinear taps,
zero outside the map) up to float rounding; bands bound the columns to about
``CHUNK_ELEMENTS`` values whatever the image size.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..eager import records_grad, runs_eagerly
from ..onednn_linear import ONEDNN, matmul

CHUNK_ELEMENTS = 1 << 22


def samples_on_cpu(*tensors: Optional[Tensor]) -> bool:
    """Whether :func:`deform_conv2d_by_sampling` computes this call: CPU tensors, eager (not
    compiling, exporting or tracing, where the standard operator must appear), no autograd."""
    present = [t for t in tensors if t is not None]
    return (
        all(t.device.type == "cpu" for t in present)
        and runs_eagerly()
        and not records_grad(*present)
    )


def _sampling_grid(
    offset: Tensor,
    in_size: Tuple[int, int],
    rows: range,
    kernel_size: Tuple[int, int],
    stride: Tuple[int, int],
    padding: Tuple[int, int],
    dilation: Tuple[int, int],
) -> Tensor:
    """``grid_sample`` coordinates [G, K, len(rows) * W', 2] (x, y; ``align_corners=False``) of
    output ``rows`` for one image's ``offset`` [G, K, 2 (dy, dx), H', W']."""
    (height, width), (kh, kw) = in_size, kernel_size
    groups, points, _, _, out_width = offset.shape
    options = {"device": offset.device, "dtype": offset.dtype}
    top = torch.arange(rows.start, rows.stop, **options) * stride[0] - padding[0]
    left = torch.arange(out_width, **options) * stride[1] - padding[1]
    tap_y = (torch.arange(kh, **options) * dilation[0]).repeat_interleave(kw)
    tap_x = (torch.arange(kw, **options) * dilation[1]).repeat(kh)
    band = offset[:, :, :, rows.start : rows.stop]
    y = band[:, :, 0] + (tap_y[:, None, None] + top[:, None])
    x = band[:, :, 1] + (tap_x[:, None, None] + left)
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    return grid.view(groups, points, -1, 2)


def deform_conv2d_by_sampling(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    *,
    stride: Tuple[int, int],
    padding: Tuple[int, int],
    dilation: Tuple[int, int],
    mask: Tensor,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Tensor:
    """``torchvision.ops.deform_conv2d`` with a modulation mask: ``x`` [B, C, H, W], ``offset``
    [B, 2 * G * K, H', W'] ((dy, dx) per group and kernel point), ``weight`` [C_out, C, kh, kw]
    (K = kh * kw), ``mask`` [B, G * K, H', W'] -> [B, C_out, H', W']."""
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    points = kh * kw
    out_height, out_width = offset.shape[-2:]
    groups = offset.shape[1] // (2 * points)
    offsets = offset.view(batch, groups, points, 2, out_height, out_width)
    masks = mask.view(batch, groups, 1, points, out_height, out_width)
    inputs = x.reshape(batch, groups, channels // groups, height, width)
    weight_matrix = weight.reshape(out_channels, channels * points)
    out = x.new_empty((batch, out_channels, out_height, out_width))
    band_rows = max(chunk_elements // (channels * points * out_width), 1)
    for b in range(batch):
        for top in range(0, out_height, band_rows):
            rows = range(top, min(top + band_rows, out_height))
            grid = _sampling_grid(
                offsets[b], (height, width), rows, (kh, kw), stride, padding, dilation
            )
            samples = F.grid_sample(
                inputs[b], grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )  # [G, C / G, K, rows * W']
            samples.mul_(masks[b, :, :, :, rows.start : rows.stop].flatten(-2))
            columns = samples.view(channels * points, -1)
            product = matmul(weight_matrix, columns, ONEDNN)
            if bias is not None:
                product += bias[:, None]
            out[b, :, rows.start : rows.stop] = product.view(out_channels, len(rows), out_width)
    return out
