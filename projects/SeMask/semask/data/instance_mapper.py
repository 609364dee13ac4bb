"""The instance training mapper: one mask-classification target per thing of COCO-format
instance annotations, and a semantic map of the things for SeMask's prior loss."""

from typing import Any, Callable, Dict, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.structures import BitMasks, Instances, polygons_to_bitmask
from pycocotools import mask as mask_util

from .image_io import DataError
from .mapper import build_semantic_augmentations, pad_to_multiple, read_checked_image
from .target_mapper import (
    Augmentations,
    MaskTargetMapper,
    build_lsj_augmentations,
    check_categories,
)

__all__ = [
    "INSTANCE_MAPPERS",
    "MaskFormerInstanceDatasetMapper",
    "annotation_mask",
    "read_instance_sample",
    "semantic_from_masks",
]

# INPUT.DATASET_MAPPER_NAME -> the augmentations of its mapper.
INSTANCE_MAPPERS: Dict[str, Callable[[CfgNode], Augmentations]] = {
    "mask_former_instance": build_semantic_augmentations,
    "coco_instance_lsj": build_lsj_augmentations,
}


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The bool mask [H, W] of a COCO ``segmentation``: polygons (lists of x, y coordinates), RLE
    (compressed or not) or a bool/0-1 array [H, W]. Raises ValueError saying what is wrong."""
    if isinstance(segmentation, list):
        if not segmentation or any(len(p) < 6 or len(p) % 2 for p in segmentation):
            raise ValueError("polygons must be lists of at least 3 (x, y) points")
        return polygons_to_bitmask([np.asarray(p, np.float64) for p in segmentation], height, width)
    if isinstance(segmentation, dict):
        if list(segmentation.get("size", ())) != [height, width]:
            raise ValueError(f"RLE of size {segmentation.get('size')}, image {[height, width]}")
        if isinstance(segmentation["counts"], list):
            segmentation = mask_util.frPyObjects(segmentation, height, width)
        return mask_util.decode(segmentation).astype(bool)
    if isinstance(segmentation, np.ndarray) and segmentation.shape == (height, width):
        return segmentation.astype(bool)
    raise ValueError(
        "expected polygons, an RLE dict or an array of the image's size, got "
        f"{type(segmentation).__name__}"
    )


def semantic_from_masks(
    masks: np.ndarray, classes: np.ndarray, ignore_label: int = 255
) -> np.ndarray:
    """The class map int64 [H, W] of instance masks bool [N, H, W] of ``classes`` [N]: each
    covered pixel has the class of the last mask covering it, ``ignore_label`` elsewhere."""
    semantic = np.full(masks.shape[1:], ignore_label, dtype=np.int64)
    for mask, cls in zip(masks, classes):
        semantic[mask] = cls
    return semantic


def read_instance_sample(
    dataset_dict: Dict[str, Any], image_format: str, num_classes: int
) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The image uint8 [H, W, 3] and the masks bool [N, H, W], classes int64 [N] and crowd flags
    bool [N] of a dataset dict's COCO ``annotations`` (contiguous ``category_id``).

    Raises :class:`DataError` naming the image if it cannot be read or is not of the dict's size,
    or an annotation has no readable ``segmentation`` or a ``category_id`` not a class id.
    """
    image = read_checked_image(dataset_dict, image_format)
    image_file, annotations = dataset_dict["file_name"], dataset_dict["annotations"]
    height, width = image.shape[:2]
    masks = []
    for index, annotation in enumerate(annotations):
        try:
            masks.append(annotation_mask(annotation.get("segmentation"), height, width))
        except ValueError as error:
            problem = f"annotation {index} of {image_file}: bad segmentation ({error})"
            raise DataError(problem) from error
    classes = np.array([a["category_id"] for a in annotations], dtype=np.int64)
    check_categories(classes, f"annotations of {image_file}", num_classes)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return image, (stacked, classes, crowd)


def _thing_instances(masks: torch.Tensor, classes: np.ndarray) -> Instances:
    """Targets of the non-empty ``masks`` bool [N, H, W] of ``classes`` [N]: ``gt_classes``,
    ``gt_masks`` (BitMasks) and ``gt_boxes`` (the masks' bounding boxes)."""
    kept = masks.flatten(1).any(dim=1)
    instances = Instances(tuple(masks.shape[1:]))
    instances.gt_classes = torch.as_tensor(classes, dtype=torch.int64)[kept]
    instances.gt_masks = BitMasks(masks[kept])
    instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
    return instances


class MaskFormerInstanceDatasetMapper(MaskTargetMapper):
    """Map a COCO-style instance dataset dict (``annotations`` with ``segmentation`` polygons or
    RLE, contiguous ``category_id``, ``iscrowd``) to a training input, for
    ``INPUT.DATASET_MAPPER_NAME`` "mask_former_instance" (ADE20K augmentation) or
    "coco_instance_lsj" (large-scale jitter).

    Masks are decoded at the image's size and augmented as label maps (nearest), then padded
    with False to a multiple of ``size_divisibility`` (the image with 128). Returns the dict with:

    * ``"image"``: uint8 [3, H, W] in ``image_format`` order;
    * ``"instances"``: one target per non-crowd annotation whose mask is not empty after
      augmentation (:func:`_thing_instances`);
    * ``"sem_seg"``: int64 [H, W] for SeMask's prior, which has no semantic labels here: each
      pixel covered by an annotation (crowd included) has its class, the last annotation winning
      where they overlap; all other pixels, stuff and padding, are ``ignore_label``, so that the
      prior learns the thing classes only (:func:`semantic_from_masks`).

    Bad samples (:func:`read_instance_sample`) follow ``bad_sample_policy`` as in
    :class:`MaskFormerSemanticDatasetMapper`.
    """

    label_key = "annotations"
    mapper_names = INSTANCE_MAPPERS
    dropped_keys = ("annotations", "sem_seg_file_name")

    def _read(self, dataset_dict: Dict[str, Any]) -> Tuple[np.ndarray, Any]:
        return read_instance_sample(dataset_dict, self.image_format, self.num_classes)

    def _targets(
        self,
        image: np.ndarray,
        labels: Tuple[np.ndarray, np.ndarray, np.ndarray],
        dataset_dict: Dict[str, Any],
    ) -> Dict[str, Any]:
        masks, classes, crowd = labels
        image_t, transforms = self._augment(
            image, semantic_from_masks(masks, classes, self.ignore_label)
        )
        size = image_t.shape[1:]
        masks_t = torch.zeros((len(masks), *size), dtype=torch.bool)
        for index, mask in enumerate(masks):
            mask = np.array(transforms.apply_segmentation(mask.astype(np.uint8)))
            mask = torch.from_numpy(mask)
            masks_t[index] = pad_to_multiple(mask, self.size_divisibility, 0).bool()
        sem_seg = semantic_from_masks(masks_t.numpy(), classes, self.ignore_label)
        return {
            "image": image_t,
            "sem_seg": torch.as_tensor(sem_seg),
            "instances": _thing_instances(masks_t[torch.as_tensor(~crowd)], classes[~crowd]),
        }
