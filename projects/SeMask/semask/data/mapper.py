"""Training dataset mapper for semantic segmentation with mask-classification targets."""

import copy
import logging
from typing import Any, Dict, List, Union

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.projects.point_rend.color_augmentation import ColorAugSSDTransform
from detectron2.structures import BitMasks, Instances

from .targets import sem_seg_to_masks

__all__ = ["MaskFormerSemanticDatasetMapper", "build_semantic_augmentations"]

# Value of padded image pixels (before normalisation), as in the official recipe.
IMAGE_PAD_VALUE = 128


def build_semantic_augmentations(cfg: CfgNode) -> List[Union[T.Augmentation, T.Transform]]:
    """Official training augmentation: shortest-edge resize, category-aware crop, SSD colour
    jitter, horizontal flip (each as enabled by ``cfg.INPUT``)."""
    ignore_label = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).ignore_label
    augs: List[Union[T.Augmentation, T.Transform]] = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                ignore_label,
            )
        )
    if cfg.INPUT.COLOR_AUG_SSD:
        augs.append(ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augs


class MaskFormerSemanticDatasetMapper:
    """Map a detectron2 semantic-segmentation dataset dict to a training input.

    Reads the image and its label map, applies the augmentations to both, pads both on the
    bottom/right to a multiple of ``size_divisibility`` (image with 128, labels with the ignore
    label) and returns the dict with:

    * ``"image"``: uint8 [3, H, W] tensor in ``image_format`` channel order;
    * ``"sem_seg"``: int64 [H, W] labels (``ignore_label`` = unlabelled or padding);
    * ``"instances"`` (when ``with_masks``): :class:`Instances` with ``gt_classes`` [N] and
      ``gt_masks`` (:class:`BitMasks`, [N, H, W]), one per class present.
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        ignore_label: int,
        size_divisibility: int,
        with_masks: bool = True,
    ) -> None:
        self.is_train = is_train
        self.tfm_gens = augmentations
        self.img_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility
        self.with_masks = with_masks
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            f"[{self.__class__.__name__}] augmentations used in {mode}: {augmentations}"
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> Dict[str, Any]:
        mapper_name = cfg.INPUT.DATASET_MAPPER_NAME
        if mapper_name not in ("mask_former_semantic", "semantic"):
            raise ValueError(
                f"INPUT.DATASET_MAPPER_NAME must be 'mask_former_semantic' or 'semantic', "
                f"got {mapper_name!r}"
            )
        return {
            "is_train": is_train,
            "augmentations": build_semantic_augmentations(cfg),
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).ignore_label,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "with_masks": mapper_name == "mask_former_semantic",
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        if not self.is_train:
            raise ValueError(f"{self.__class__.__name__} is for training only (is_train=False)")
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"dataset dict of {dataset_dict.get('file_name')!r} has no 'sem_seg_file_name'; "
                f"{self.__class__.__name__} needs semantic labels"
            )
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        sem_seg = utils.read_image(dataset_dict.pop("sem_seg_file_name")).astype("double")
        if sem_seg.ndim != 2:
            raise ValueError(
                f"label map of {dataset_dict['file_name']!r} must be single-channel, "
                f"got shape {sem_seg.shape}"
            )

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        T.AugmentationList(self.tfm_gens)(aug_input)
        image_t = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        sem_seg_t = torch.as_tensor(aug_input.sem_seg.astype("long"))

        if self.size_divisibility > 0:
            height, width = sem_seg_t.shape
            pad_h = -height % self.size_divisibility
            pad_w = -width % self.size_divisibility
            image_t = F.pad(image_t, (0, pad_w, 0, pad_h), value=IMAGE_PAD_VALUE)
            sem_seg_t = F.pad(sem_seg_t, (0, pad_w, 0, pad_h), value=self.ignore_label)

        dataset_dict["image"] = image_t
        dataset_dict["sem_seg"] = sem_seg_t
        if self.with_masks:
            classes, masks = sem_seg_to_masks(sem_seg_t, self.ignore_label)
            instances = Instances(tuple(sem_seg_t.shape))
            instances.gt_classes = classes
            instances.gt_masks = BitMasks(masks)
            dataset_dict["instances"] = instances
        return dataset_dict
