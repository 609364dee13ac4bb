"""How far one inference lands from a float32 reference: argmax agreement and score error."""

from typing import Dict

import torch


def score_agreement(scores: torch.Tensor, reference: torch.Tensor) -> Dict[str, float]:
    """Compare [B, K, H, W] class scores with the ``reference`` scores of the same inputs.

    Returns ``argmax_agreement`` (the fraction of the B x H x W pixels whose top class is the
    same), ``relative_error`` (||scores - reference|| / ||reference||, Frobenius norms over the
    whole batch) and ``max_abs_error``.
    """
    if scores.shape != reference.shape or scores.dim() != 4:
        raise ValueError(
            f"scores and reference must both be [B, K, H, W] of one shape, got "
            f"{tuple(scores.shape)} and {tuple(reference.shape)}"
        )
    scores, reference = scores.float(), reference.float()
    difference = scores - reference
    return {
        "argmax_agreement": (scores.argmax(1) == reference.argmax(1)).float().mean().item(),
        "relative_error": (difference.norm() / reference.norm().clamp_min(1e-12)).item(),
        "max_abs_error": difference.abs().max().item(),
    }
