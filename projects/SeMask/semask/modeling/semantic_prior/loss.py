"""SeMask's prior loss ``loss_cate``: cross-entropy of the aggregated prior against the labels."""

from typing import Dict, List

import torch

from ..criterion import ignore_aware_cross_entropy


def prior_loss(prior_sum: torch.Tensor, sem_seg: torch.Tensor, ignore_value: int) -> torch.Tensor:
    """``loss_cate`` (unweighted), as every SeMask family trains its priors: the cross-entropy
    of the semantic decoder's output (:func:`aggregate_priors`, the stride-4 sum resized 4x with
    align_corners=True), with that resize done inside the loss.

    Args:
        prior_sum: [B, K, h, w] summed prior logits (:func:`prior_sum`) at stride 4.
        sem_seg: [B, 4h, 4w] int64 padded labels, ``ignore_value`` = unlabelled.
    Returns:
        scalar: the cross-entropy, mean over labelled pixels (0 when none is labelled).
    """
    expected = (4 * prior_sum.shape[-2], 4 * prior_sum.shape[-1])
    if tuple(sem_seg.shape[-2:]) != expected:
        raise ValueError(
            f"loss_cate: the semantic decoder's output size {expected} (4x the stride-4 prior "
            f"sum) differs from the label size {tuple(sem_seg.shape[-2:])}"
        )
    return ignore_aware_cross_entropy(prior_sum, sem_seg, ignore_value, align_corners=True)


class CriterionPriorLoss:
    """:func:`prior_loss` as a ``SetCriterion`` extra loss: ``fn(outputs, targets)`` reads the
    head's ``prior_sum`` [B, K, h, w] and each target's padded ``sem_seg`` [4h, 4w]."""

    def __init__(self, ignore_value: int) -> None:
        self.ignore_value = ignore_value

    def __call__(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> torch.Tensor:
        if "prior_sum" not in outputs:
            raise KeyError(
                "loss_cate needs the head's 'prior_sum' (a backbone with semantic layers); "
                "set MODEL.SEMASK.CATE_WEIGHT 0 for a backbone without priors"
            )
        sem_seg = torch.stack([t["sem_seg"] for t in targets])
        return prior_loss(outputs["prior_sum"], sem_seg, self.ignore_value)
