"""Per-pixel cross-entropy of full-resolution class maps, a band of rows at a time.

``F.cross_entropy`` on [B, K, H, W] logits keeps a log-softmax of the same size for its backward
and builds its gradient from a zero-filled map of that size; at 150 classes and 512 x 512 each is
157 MB. Here the forward keeps only the per-pixel log-sum-exp [B, H, W], and the backward writes
the gradient (softmax minus one-hot) band by band.

Logits predicted at a coarser size are bilinearly resized to the labels inside the bands: the
columns are resized once (a map H / h times smaller than the full one), and each band's rows are
interpolated from the two source rows PyTorch's bilinear resize reads, so neither the full-size
logits nor their gradient ever exists.
"""

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

BAND_ELEMENTS = 1 << 21


class RowInterpolation(NamedTuple):
    """Output row i of a bilinear resize is ``lerp(source[near[i]], source[far[i]], weight)``:
    ``near``, ``far`` int64 [H_out]; ``matrix`` [H_out, H_in] holds the weights, so that a band of
    output rows is a small matrix product with the source rows between its first ``near`` and
    last ``far``."""

    near: Tensor
    far: Tensor
    matrix: Tensor


def row_interpolation(
    in_rows: int, out_rows: int, align_corners: bool, dtype: torch.dtype, device: torch.device
) -> RowInterpolation:
    """The source rows and weights of ``F.interpolate(mode="bilinear", size=...)`` along one
    axis, with its convention for ``align_corners``."""
    out = torch.arange(out_rows, dtype=torch.float64, device=device)
    if align_corners:
        source = out * ((in_rows - 1) / (out_rows - 1) if out_rows > 1 else 0.0)
    else:
        source = ((out + 0.5) * (in_rows / out_rows) - 0.5).clamp_(min=0.0)
    near = source.long().clamp_(max=in_rows - 1)
    far = (near + 1).clamp_(max=in_rows - 1)
    weight = source - near
    matrix = torch.zeros(out_rows, in_rows, dtype=torch.float64, device=device)
    matrix.index_put_((out.long(), near), 1.0 - weight, accumulate=True)
    matrix.index_put_((out.long(), far), weight, accumulate=True)
    return RowInterpolation(near, far, matrix.to(dtype))


def _band_rows(batch: int, classes: int, width: int, band_elements: int) -> int:
    return max(band_elements // max(batch * classes * width, 1), 1)


def _band(
    source: Tensor, rows: slice, interpolation: Optional[RowInterpolation]
) -> Tuple[Tensor, Optional[Tensor], slice]:
    """Logits [B, K, len(rows), W] of output rows ``rows``; with ``interpolation`` also its
    weights [len(rows), n] over the n source rows ``sources`` it reads."""
    if interpolation is None:
        return source[:, :, rows], None, rows
    near, far, matrix = interpolation
    last = min(rows.stop, len(near)) - 1
    sources = slice(int(near[rows.start]), int(far[last]) + 1)
    weights = matrix[rows, sources]
    return torch.matmul(weights, source[:, :, sources]), weights, sources


class _CrossEntropySum(torch.autograd.Function):
    """Sum over labelled pixels of logsumexp(logits) - logits[label]: source [B, K, h, W] (h = H
    without ``interpolation``), labels [B, H, W] int64 (``ignore_value`` = unlabelled) -> scalar."""

    @staticmethod
    def forward(ctx, source, labels, ignore_value, band_elements, interpolation):
        batch, classes, _, width = source.shape
        height = labels.shape[1]
        step = _band_rows(batch, classes, width, band_elements)
        labelled = labels != ignore_value
        safe_labels = labels.masked_fill(~labelled, 0)
        log_sum_exp = source.new_empty(labels.shape)
        total = source.new_zeros(())
        for top in range(0, height, step):
            rows = slice(top, top + step)
            band = _band(source, rows, interpolation)[0]
            lse = torch.logsumexp(band, dim=1)
            log_sum_exp[:, rows] = lse
            picked = band.gather(1, safe_labels[:, None, rows]).squeeze(1)
            total += (lse - picked).masked_fill_(~labelled[:, rows], 0.0).sum()
        ctx.save_for_backward(source, safe_labels, labelled, log_sum_exp)
        ctx.step, ctx.interpolation = step, interpolation
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor) -> Tuple[Optional[Tensor], None, None, None, None]:
        source, safe_labels, labelled, log_sum_exp = ctx.saved_tensors
        interpolation = ctx.interpolation
        grad = torch.empty_like(source) if interpolation is None else torch.zeros_like(source)
        for top in range(0, labelled.shape[1], ctx.step):
            rows = slice(top, top + ctx.step)
            band, weights, sources = _band(source, rows, interpolation)
            band = (band - log_sum_exp[:, None, rows]).exp_()  # the softmax
            index = safe_labels[:, None, rows]
            band.scatter_add_(
                1, index, torch.full(index.shape, -1.0, dtype=band.dtype, device=band.device)
            )
            band.mul_(labelled[:, None, rows] * grad_total)
            if weights is None:
                grad[:, :, rows] = band
            else:
                grad[:, :, sources] += torch.matmul(weights.t(), band)
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
    logits: Tensor, labels: Tensor, ignore_value: int, band_elements: int = BAND_ELEMENTS
) -> Tensor:
    """``F.cross_entropy(logits, labels, ignore_index=ignore_value, reduction="sum")`` for
    logits [B, K, H, W] (float) and labels [B, H, W] int64, in bands of about ``band_elements``
    logits. A label outside [0, K) that is not ``ignore_value`` raises a ValueError."""
    _check_labels(labels, logits.shape[1], ignore_value)
    return _CrossEntropySum.apply(logits, labels, ignore_value, band_elements, None)


def resized_cross_entropy_sum(
    logits: Tensor,
    labels: Tensor,
    ignore_value: int,
    align_corners: bool,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """:func:`cross_entropy_sum` of ``F.interpolate(logits, size=labels.shape[-2:],
    mode="bilinear", align_corners=align_corners)`` for logits [B, K, h, w], without the resized
    logits or their gradient at full size."""
    _check_labels(labels, logits.shape[1], ignore_value)
    (in_rows, in_columns), (out_rows, out_columns) = logits.shape[-2:], labels.shape[-2:]
    source = logits
    if in_columns != out_columns:  # same height: the rows come out unchanged
        source = F.interpolate(
            logits, size=(in_rows, out_columns), mode="bilinear", align_corners=align_corners
        )
    interpolation = None
    if in_rows != out_rows:
        interpolation = row_interpolation(
            in_rows, out_rows, align_corners, logits.dtype, logits.device
        )
    return _CrossEntropySum.apply(source, labels, ignore_value, band_elements, interpolation)
