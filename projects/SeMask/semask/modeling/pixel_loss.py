"""Per-pixel cross-entropy of full-resolution class maps, a band of rows at a time.

``F.cross_entropy`` on [B, K, H, W] logits keeps a log-softmax of the same size for its backward
and builds its gradient from a zero-filled map of that size; at 150 classes and 512 x 512 each is
157 MB. Here the forward keeps only the per-pixel log-sum-exp [B, H, W], and the backward writes
the gradient (softmax minus one-hot) band by band.

Logits predicted at a coarser size are bilinearly resized to the labels inside the bands: the
columns are resized once (a map H / h times smaller than the full one), and each band's rows are
interpolated from the source rows PyTorch's bilinear resize reads, so neither the full-size logits
nor their gradient ever exists. The work runs on a rows-first copy [h, B, K, W] of the logits, in
which a band of rows is one matrix: its interpolation, and that of its gradient, is one product.
"""

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..upsample import bilinear_matrix, bilinear_source_rows

BAND_ELEMENTS = 1 << 21


class RowInterpolation(NamedTuple):
    """Output row i of a bilinear resize is ``lerp(source[near[i]], source[far[i]], weight)``:
    ``near``, ``far`` int64 [H_out] on the CPU (read as Python ints, no device sync);
    ``matrix`` [H_out, H_in], on the logits' device, holds the weights, so that a band of
    output rows is a small matrix product with the source rows between its first ``near`` and
    last ``far``."""

    near: Tensor
    far: Tensor
    matrix: Tensor


def row_interpolation(
    in_rows: int, out_rows: int, align_corners: bool, dtype: torch.dtype, device: torch.device
) -> RowInterpolation:
    """The source rows and weights of ``F.interpolate(mode="bilinear", size=...)`` along one
    axis (:func:`semask.upsample.bilinear_source_rows`) as a :class:`RowInterpolation`."""
    near, far, _, _ = bilinear_source_rows(in_rows, out_rows, 0, out_rows, align_corners, dtype)
    matrix = bilinear_matrix(in_rows, out_rows, align_corners, dtype)
    return RowInterpolation(near, far, matrix.to(device))


def _band_rows(batch: int, classes: int, width: int, band_elements: int) -> int:
    return max(band_elements // max(batch * classes * width, 1), 1)


def _band(
    source: Tensor, rows: slice, interpolation: Optional[RowInterpolation], buffer: Tensor
) -> Tuple[Tensor, Optional[Tensor], slice]:
    """Logits [len(rows), B, K, W] of output rows ``rows`` from the rows-first ``source``
    [h, B, K, W], written into ``buffer`` (one allocation for all bands); with ``interpolation``
    also their weights [len(rows), n] over the n source rows ``sources`` they read."""
    if interpolation is None:
        band = source[rows]
        return buffer[: len(band)].copy_(band), None, rows
    near, far, matrix = interpolation
    last = min(rows.stop, len(near)) - 1
    sources = slice(int(near[rows.start]), int(far[last]) + 1)
    weights = matrix[rows, sources]
    band = buffer[: weights.shape[0]]
    torch.mm(weights, source[sources].view(weights.shape[1], -1), out=band.view(len(band), -1))
    return band, weights, sources


class _CrossEntropySum(torch.autograd.Function):
    """Sum over labelled pixels of logsumexp(logits) - logits[label]: rows-first source
    [h, B, K, W] (h = H without ``interpolation``), rows-first labels [H, B, W] int64
    (``ignore_value`` = unlabelled) -> scalar."""

    @staticmethod
    def forward(ctx, source, labels, ignore_value, band_elements, interpolation):
        _, batch, classes, width = source.shape
        step = _band_rows(batch, classes, width, band_elements)
        labelled = labels != ignore_value
        safe_labels = labels.masked_fill(~labelled, 0)
        log_sum_exp = source.new_empty(labels.shape)
        total = source.new_zeros(())
        buffer = source.new_empty(step, *source.shape[1:])
        for top in range(0, labels.shape[0], step):
            rows = slice(top, top + step)
            band = _band(source, rows, interpolation, buffer)[0]
            lse = torch.logsumexp(band, dim=2)
            log_sum_exp[rows] = lse
            picked = band.gather(2, safe_labels[rows, :, None]).squeeze(2)
            total += (lse - picked).masked_fill_(~labelled[rows], 0.0).sum()
        ctx.save_for_backward(source, safe_labels, labelled, log_sum_exp)
        ctx.step, ctx.interpolation = step, interpolation
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor) -> Tuple[Optional[Tensor], None, None, None, None]:
        source, safe_labels, labelled, log_sum_exp = ctx.saved_tensors
        interpolation = ctx.interpolation
        grad = torch.empty_like(source) if interpolation is None else torch.zeros_like(source)
        buffer = source.new_empty(ctx.step, *source.shape[1:])
        for top in range(0, labelled.shape[0], ctx.step):
            rows = slice(top, top + ctx.step)
            band, weights, sources = _band(source, rows, interpolation, buffer)
            band.sub_(log_sum_exp[rows, :, None]).exp_()  # the softmax
            index = safe_labels[rows, :, None]
            band.scatter_add_(
                2, index, torch.full(index.shape, -1.0, dtype=band.dtype, device=band.device)
            )
            band.mul_(labelled[rows, :, None] * grad_total)
            if weights is None:
                grad[rows] = band
            else:
                target = grad[sources].view(weights.shape[1], -1)
                target.addmm_(weights.t(), band.view(weights.shape[0], -1))
        return grad, None, None, None, None


def _check_labels(labels: Tensor, classes: int, ignore_value: int) -> None:
    wrong = (labels != ignore_value) & ((labels < 0) | (labels >= classes))
    if bool(wrong.any()):
        values = sorted(set(labels[wrong].unique().tolist()))[:8]
        raise ValueError(
            f"cross-entropy: labels {values} are outside [0, {classes}) and are not the ignore "
            f"value {ignore_value}"
        )


def cross_entropy_sum(
    logits: Tensor,
    labels: Tensor,
    ignore_value: int,
    align_corners: bool = False,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """``F.cross_entropy(F.interpolate(logits, size=labels.shape[-2:], mode="bilinear",
    align_corners=align_corners), labels, ignore_index=ignore_value, reduction="sum")`` for logits
    [B, K, h, w] (float) and labels [B, H, W] int64 (no resize where the sizes are equal), in
    bands of about ``band_elements`` logits, without the resized logits or their gradient at
    full size. A label outside [0, K) that is not ``ignore_value`` raises a ValueError."""
    _check_labels(labels, logits.shape[1], ignore_value)
    batch, classes, in_rows, in_columns = logits.shape
    out_rows, out_columns = labels.shape[-2:]
    source = logits.permute(2, 0, 1, 3)  # rows first: [h, B, K, w]
    if in_columns != out_columns:  # each source row resized as an image of one row
        source = F.interpolate(
            source.reshape(in_rows * batch, classes, 1, in_columns),
            size=(1, out_columns),
            mode="bilinear",
            align_corners=align_corners,
        ).view(in_rows, batch, classes, out_columns)
    else:
        source = source.contiguous()
    interpolation = None
    if in_rows != out_rows:
        interpolation = row_interpolation(
            in_rows, out_rows, align_corners, logits.dtype, logits.device
        )
    rows_first_labels = labels.transpose(0, 1).contiguous()
    return _CrossEntropySum.apply(
        source, rows_first_labels, ignore_value, band_elements, interpolation
    )
