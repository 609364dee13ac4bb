"""SeMask's prior loss ``loss_cate``: cross-entropy of the aggregated prior against the labels."""

from typing import Dict, List

import torch

from ..criterion import ignore_aware_cross_entropy


def prior_loss(sem_pred: torch.Tensor, sem_seg: torch.Tensor, ignore_value: int) -> torch.Tensor:
    """``loss_cate`` (unweighted), as every SeMask family trains its priors.

    Args:
        sem_pred: [B, K, H, W] aggregated prior logits (:func:`aggregate_priors`) at the padded
            label size.
        sem_seg: [B, H, W] int64 padded labels, ``ignore_value`` = unlabelled.
    Returns:
        scalar: the cross-entropy, mean over labelled pixels (0 when none is labelled).
    """
    return ignore_aware_cross_entropy(sem_pred, sem_seg, ignore_value)


class CriterionPriorLoss:
    """:func:`prior_loss` as a ``SetCriterion`` extra loss: ``fn(outputs, targets)`` reads the
    head's ``sem_pred`` [B, K, H, W] and each target's padded ``sem_seg`` [H, W]."""

    def __init__(self, ignore_value: int) -> None:
        self.ignore_value = ignore_value

    def __call__(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> torch.Tensor:
        if "sem_pred" not in outputs:
            raise KeyError(
                "loss_cate needs the head's 'sem_pred' (a backbone with semantic layers); "
                "set MODEL.SEMASK.CATE_WEIGHT 0 for a backbone without priors"
            )
        sem_seg = torch.stack([t["sem_seg"] for t in targets])
        return prior_loss(outputs["sem_pred"], sem_seg, self.ignore_value)
