"""Panoptic labels in the COCO panoptic format and what is derived from them: the semantic map
that SeMask's prior loss trains on and the per-segment training targets.

A panoptic PNG stores one segment id per pixel as RGB, ``id = R + 256 * G + 256**2 * B``
(0 = void). Its image's ``segments_info`` lists the segments: ``id``, ``category_id`` (contiguous
here, ``0..K-1``, as detectron2's panoptic loaders give it), ``iscrowd`` and, from the metadata,
``isthing``.

Conventions (the same as Mask2Former's panoptic training and its ``panoptic_semseg`` conversion):

* the semantic map gives every listed segment's pixels its category, things and stuff alike,
  crowd regions included; void pixels and pixels of ids not listed are ``ignore_label``;
* training targets are one mask per segment that is not crowd; crowd regions are neither a target
  nor a negative for the mask losses (they only reach the model through the semantic map).
"""

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from detectron2.structures import BitMasks, Boxes, Instances

# Bases of the RGB encoding of segment ids.
_RGB_BASES = np.array([1, 256, 256 * 256], dtype=np.int64)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids int64 [H, W] of a panoptic PNG read as uint8 RGB [H, W, 3]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a panoptic PNG must be RGB [H, W, 3], got shape {rgb.shape}")
    return rgb.astype(np.int64) @ _RGB_BASES


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """The uint8 RGB [H, W, 3] encoding of segment ids [H, W] (inverse of :func:`rgb_to_id`)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256**3:
        raise ValueError("panoptic segment ids must be in 0..256**3 - 1")
    return np.stack([(ids // base) % 256 for base in _RGB_BASES], axis=-1).astype(np.uint8)


def semantic_from_segments(
    segment_ids: np.ndarray, segments_info: Iterable[Mapping[str, Any]], ignore_label: int = 255
) -> np.ndarray:
    """The semantic map uint8 [H, W] of a panoptic label: each listed segment's ``category_id``
    (crowd included), ``ignore_label`` elsewhere.

    Args:
        segment_ids: int [H, W] segment ids (:func:`rgb_to_id`).
        segments_info: the image's segments (``id``, contiguous ``category_id``).
    """
    semantic = np.full(segment_ids.shape, ignore_label, dtype=np.uint8)
    for segment in segments_info:
        semantic[segment_ids == segment["id"]] = segment["category_id"]
    return semantic


def segment_instances(
    segment_ids: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    things_only: bool = False,
) -> Instances:
    """Training targets of a panoptic label: one mask per segment that is not crowd, and with
    ``things_only`` (instance segmentation) only segments of thing classes.

    Args:
        segment_ids: int [H, W] segment ids (:func:`rgb_to_id`), after augmentation.
        segments_info: the image's segments (``id``, contiguous ``category_id``, ``iscrowd``,
            ``isthing``).
    Returns:
        :class:`Instances` of size (H, W) with ``gt_classes`` [N] int64, ``gt_masks``
        (:class:`BitMasks` [N, H, W]) and ``gt_boxes`` (:class:`Boxes` [N, 4], XYXY, the masks'
        bounding boxes). Segments that the augmentation cropped away are dropped.
    """
    classes, masks = [], []
    for segment in segments_info:
        if segment.get("iscrowd", 0) or (things_only and not segment.get("isthing", True)):
            continue
        mask = segment_ids == segment["id"]
        if mask.any():
            classes.append(int(segment["category_id"]))
            masks.append(mask)
    height, width = segment_ids.shape
    instances = Instances((height, width))
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    if masks:
        gt_masks = BitMasks(torch.from_numpy(np.stack(masks)))
    else:
        gt_masks = BitMasks(torch.zeros((0, height, width), dtype=torch.bool))
    instances.gt_masks = gt_masks
    instances.gt_boxes = gt_masks.get_bounding_boxes() if masks else Boxes(torch.zeros((0, 4)))
    return instances
