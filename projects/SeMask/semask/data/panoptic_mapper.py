"""The panoptic training mapper: one mask-classification target per segment of a COCO-format
panoptic PNG, and the semantic map that SeMask's prior loss trains on."""

from typing import Any, Callable, Dict, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode

from .image_io import read_image
from .mapper import (
    build_semantic_augmentations,
    check_label_size,
    pad_to_multiple,
    read_checked_image,
)
from .panoptic_labels import rgb_to_id, segment_instances, semantic_from_segments
from .target_mapper import (
    Augmentations,
    MaskTargetMapper,
    build_lsj_augmentations,
    check_categories,
)

__all__ = ["MaskFormerPanopticDatasetMapper", "PANOPTIC_MAPPERS", "read_panoptic_sample"]

# Segment id of void pixels in a panoptic PNG, and of the padding added to one.
VOID_SEGMENT = 0
# INPUT.DATASET_MAPPER_NAME -> the augmentations of its mapper.
PANOPTIC_MAPPERS: Dict[str, Callable[[CfgNode], Augmentations]] = {
    "mask_former_panoptic": build_semantic_augmentations,
    "coco_panoptic_lsj": build_lsj_augmentations,
}


def read_panoptic_sample(
    dataset_dict: Dict[str, Any], image_format: str, num_classes: int
) -> Tuple[np.ndarray, np.ndarray]:
    """The image uint8 [H, W, 3] and segment ids int64 [H, W] of a panoptic dataset dict.

    Raises :class:`DataError` naming the files if one cannot be read, the image is not of the
    dict's size, the panoptic PNG is not of the image's size, or a segment's ``category_id`` is
    not a class id. Segments listed but absent from the PNG are fine (no target); ids in the PNG
    not listed are void.
    """
    image = read_checked_image(dataset_dict, image_format)
    panoptic_file = dataset_dict["pan_seg_file_name"]
    segment_ids = rgb_to_id(read_image(panoptic_file, format="RGB"))
    check_label_size(
        segment_ids, panoptic_file, image, dataset_dict["file_name"], kind="panoptic PNG"
    )
    check_categories(
        [segment["category_id"] for segment in dataset_dict["segments_info"]],
        f"segments_info of {panoptic_file}",
        num_classes,
    )
    return image, segment_ids


class MaskFormerPanopticDatasetMapper(MaskTargetMapper):
    """Map a panoptic dataset dict (``pan_seg_file_name``, ``segments_info`` with contiguous
    ``category_id``) to a training input, for ``INPUT.DATASET_MAPPER_NAME``
    "mask_former_panoptic" (ADE20K augmentation) or "coco_panoptic_lsj" (large-scale jitter).

    The segment ids are augmented as a label map (nearest), then padded with the void id to a
    multiple of ``size_divisibility`` (the image with 128). Returns the dict with:

    * ``"image"``: uint8 [3, H, W] in ``image_format`` order;
    * ``"instances"``: one target per non-crowd segment left after augmentation
      (:func:`segment_instances`: ``gt_classes`` [N], ``gt_masks`` BitMasks [N, H, W], False on
      the padding, ``gt_boxes``);
    * ``"sem_seg"``: int64 [H, W], every listed segment's class, crowd included, ``ignore_label``
      on void and padding (:func:`semantic_from_segments`). It is derived from the panoptic PNG,
      so a dict's ``sem_seg_file_name`` is not read (and not kept).

    Bad samples (:func:`read_panoptic_sample`) follow ``bad_sample_policy`` as in
    :class:`MaskFormerSemanticDatasetMapper`.
    """

    label_key = "pan_seg_file_name"
    mapper_names = PANOPTIC_MAPPERS
    dropped_keys = ("pan_seg_file_name", "sem_seg_file_name")

    def _read(self, dataset_dict: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        return read_panoptic_sample(dataset_dict, self.image_format, self.num_classes)

    def _targets(
        self, image: np.ndarray, segment_ids: np.ndarray, dataset_dict: Dict[str, Any]
    ) -> Dict[str, Any]:
        segments_info = dataset_dict["segments_info"]
        semantic = semantic_from_segments(segment_ids, segments_info, self.ignore_label)
        image_t, transforms = self._augment(image, semantic)
        # float64 holds every id exactly through the interpolation of non-uint8 maps.
        segment_ids = transforms.apply_segmentation(segment_ids.astype(np.float64))
        segment_ids_t = torch.as_tensor(segment_ids.astype(np.int64))
        segment_ids = pad_to_multiple(segment_ids_t, self.size_divisibility, VOID_SEGMENT).numpy()
        sem_seg = semantic_from_segments(segment_ids, segments_info, self.ignore_label)
        return {
            "image": image_t,
            "sem_seg": torch.as_tensor(sem_seg.astype(np.int64)),
            "instances": segment_instances(segment_ids, segments_info),
        }
