"""Mask-classification targets from a semantic label map."""

from typing import Tuple

import torch


def sem_seg_to_masks(
    sem_seg: torch.Tensor, ignore_value: int = 255
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split a label map into one binary mask per class present.

    Args:
        sem_seg: [H, W] integer label map; ``ignore_value`` marks unlabelled pixels.
    Returns:
        classes: [N] int64, the classes present, ascending.
        masks: [N, H, W] bool, ``masks[i] == (sem_seg == classes[i])``.
    """
    classes = torch.unique(sem_seg)
    classes = classes[classes != ignore_value].long()
    masks = sem_seg.unsqueeze(0) == classes.view(-1, 1, 1)
    return classes, masks
