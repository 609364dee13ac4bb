"""Per-pixel cross-entropy of full-resolution class maps, a band of rows at a time.

``F.cross_entropy`` on [B, K, H, W] logits keeps a log-softmax of the same size for its backward
and builds its gradient from a zero-filled map of that size; at 150 classes and 512 x 512 each is
157 MB. Here the forward keeps only the per-pixel log-sum-exp [B, H, W], and the backward writes
the gradient (softmax minus one-hot) band by band, straight into its one full-size tensor.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

BAND_ELEMENTS = 1 << 21


def _band_rows(logits: Tensor, band_elements: int) -> int:
    batch, classes, _, width = logits.shape
    return max(band_elements // max(batch * classes * width, 1), 1)


class _CrossEntropySum(torch.autograd.Function):
    """Sum over labelled pixels of logsumexp(logits) - logits[label]: logits [B, K, H, W],
    labels [B, H, W] int64 (``ignore_value`` = unlabelled) -> scalar."""

    @staticmethod
    def forward(
        ctx, logits: Tensor, labels: Tensor, ignore_value: int, band_elements: int
    ) -> Tensor:
        rows = _band_rows(logits, band_elements)
        labelled = labels != ignore_value
        safe_labels = labels.masked_fill(~labelled, 0)
        log_sum_exp = logits.new_empty(labels.shape)
        total = logits.new_zeros(())
        for top in range(0, logits.shape[2], rows):
            band = logits[:, :, top : top + rows]
            lse = torch.logsumexp(band, dim=1)
            log_sum_exp[:, top : top + rows] = lse
            picked = band.gather(1, safe_labels[:, None, top : top + rows]).squeeze(1)
            total += (lse - picked).masked_fill_(~labelled[:, top : top + rows], 0.0).sum()
        ctx.save_for_backward(logits, safe_labels, labelled, log_sum_exp)
        ctx.rows = rows
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor) -> Tuple[Optional[Tensor], None, None, None]:
        logits, safe_labels, labelled, log_sum_exp = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for top in range(0, logits.shape[2], ctx.rows):
            rows = slice(top, top + ctx.rows)
            band = (logits[:, :, rows] - log_sum_exp[:, None, rows]).exp_()
            index = safe_labels[:, None, rows]
            band.scatter_add_(
                1, index, torch.full(index.shape, -1.0, dtype=band.dtype, device=band.device)
            )
            grad[:, :, rows] = band.mul_(labelled[:, None, rows] * grad_total)
        return grad, None, None, None


def cross_entropy_sum(
    logits: Tensor, labels: Tensor, ignore_value: int, band_elements: int = BAND_ELEMENTS
) -> Tensor:
    """``F.cross_entropy(logits, labels, ignore_index=ignore_value, reduction="sum")`` for
    logits [B, K, H, W] (float) and labels [B, H, W] int64, in bands of about ``band_elements``
    logits. A label outside [0, K) that is not ``ignore_value`` raises a ValueError."""
    classes = logits.shape[1]
    wrong = (labels != ignore_value) & ((labels < 0) | (labels >= classes))
    if bool(wrong.any()):
        values = sorted(set(labels[wrong].unique().tolist()))[:8]
        raise ValueError(
            f"cross-entropy: labels {values} are outside [0, {classes}) and are not the ignore "
            f"value {ignore_value}"
        )
    return _CrossEntropySum.apply(logits, labels, ignore_value, band_elements)
