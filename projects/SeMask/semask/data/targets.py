"""Mask-classification targets: made from a semantic label map by the training mapper
(:func:`semantic_instances`), padded to the batch by the model (:func:`padded_instance_targets`).
"""

from typing import Tuple

import torch
from detectron2.structures import BitMasks, Instances


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


def semantic_instances(sem_seg: torch.Tensor, ignore_value: int = 255) -> Instances:
    """The training targets of a label map [H, W]: :class:`Instances` of image size (H, W) with
    ``gt_classes`` [N] int64 and ``gt_masks`` (:class:`BitMasks` [N, H, W]), one per class
    present, classes ascending (:func:`sem_seg_to_masks`)."""
    classes, masks = sem_seg_to_masks(sem_seg, ignore_value)
    instances = Instances(tuple(sem_seg.shape))
    instances.gt_classes = classes
    instances.gt_masks = BitMasks(masks)
    return instances


def padded_instance_targets(
    instances: Instances,
    image_size: Tuple[int, int],
    padded_size: Tuple[int, int],
    device: torch.device,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Classes and masks of one image's ``instances``, masks zero-padded on the bottom/right.

    Args:
        instances: ``gt_classes`` [N] and ``gt_masks`` [N, H, W] (:class:`BitMasks` or a tensor,
            as detectron2's and Mask2Former's mappers give them).
        image_size: (H, W), the image's size inside the batch.
        padded_size: (Hp, Wp) >= (H, W), the batch's padded size.
    Returns:
        labels: [N] int64; masks: [N, Hp, Wp] bool, False on the padding.
    """
    gt_masks = instances.gt_masks
    gt_masks = gt_masks.tensor if isinstance(gt_masks, BitMasks) else gt_masks
    if tuple(gt_masks.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"instances.gt_masks are {tuple(gt_masks.shape[-2:])} (height, width) but the image is "
            f"{tuple(image_size)}"
        )
    height, width = image_size
    masks = torch.zeros((len(gt_masks), *padded_size), dtype=torch.bool, device=device)
    masks[:, :height, :width] = gt_masks.to(device, torch.bool)
    return instances.gt_classes.to(device, torch.int64), masks
