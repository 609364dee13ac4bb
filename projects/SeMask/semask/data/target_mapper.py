"""The base of the panoptic and instance training mappers (the universal Mask2Former recipe) and
COCO's large-scale-jitter augmentation.

Each of those mappers serves two ``INPUT.DATASET_MAPPER_NAME`` values, which differ only in
augmentation: the ADE20K recipe (:func:`build_semantic_augmentations`: resize, category-area crop,
colour jitter, flip) or large-scale jitter (:func:`build_lsj_augmentations`).
"""

import copy
import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import transforms as T

from .image_io import DataError
from .mapper import (
    IMAGE_PAD_VALUE,
    _check_policy,
    pad_to_multiple,
    skip_or_raise,
    train_ignore_label,
    training_bad_samples,
)

__all__ = ["Augmentations", "MaskTargetMapper", "build_lsj_augmentations", "check_categories"]

Augmentations = List[Union[T.Augmentation, T.Transform]]


def build_lsj_augmentations(cfg: CfgNode) -> Augmentations:
    """COCO's large-scale jitter: flip (``INPUT.RANDOM_FLIP``), resize to fit a square of side
    ``INPUT.IMAGE_SIZE`` times a random scale in [``INPUT.MIN_SCALE``, ``INPUT.MAX_SCALE``], then a
    random crop to ``IMAGE_SIZE`` x ``IMAGE_SIZE``, padded on the bottom/right where the image is
    smaller (image with 128, segmentations with 0: void segment, no mask)."""
    augs: Augmentations = []
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    size = cfg.INPUT.IMAGE_SIZE
    augs.append(T.ResizeScale(cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, size, size))
    augs.append(T.FixedSizeCrop((size, size), pad_value=IMAGE_PAD_VALUE))
    return augs


def check_categories(category_ids: Sequence[int], where: str, num_classes: int) -> None:
    """Raise :class:`DataError` naming ``where`` (the file) if a category id is not a class id
    ``0..num_classes-1``."""
    bad = sorted({int(c) for c in category_ids if not 0 <= c < num_classes})
    if bad:
        raise DataError(
            f"{where} has category_id {', '.join(map(str, bad))}, not a class id "
            f"0..{num_classes - 1} (MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes})"
        )


class MaskTargetMapper(ABC):
    """The base of the panoptic and instance training mappers: reading under the bad-sample
    policy, augmentation, padding of the image.

    A subclass names the dataset-dict key it needs (``label_key``), the names it serves
    (``mapper_names``: name -> augmentations), and implements ``_read`` (the checked sample before
    augmentation) and ``_targets`` (the augmented, padded training fields).
    """

    label_key: str
    mapper_names: Dict[str, Callable[[CfgNode], Augmentations]]
    # Dataset-dict keys that the mapped dict does not keep (its targets replace them).
    dropped_keys: Tuple[str, ...]

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: Augmentations,
        image_format: str,
        ignore_label: int,
        num_classes: int,
        size_divisibility: int,
        bad_sample_policy: str = "error",
    ) -> None:
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.num_classes = num_classes
        self.size_divisibility = size_divisibility
        self.bad_sample_policy = _check_policy(bad_sample_policy)
        self.bad_samples = training_bad_samples()
        logging.getLogger(__name__).info(
            f"[{type(self).__name__}] augmentations used in training: {augmentations}"
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> Dict[str, Any]:
        name = cfg.INPUT.DATASET_MAPPER_NAME
        if name not in cls.mapper_names:
            raise ValueError(
                f"{cls.__name__} serves INPUT.DATASET_MAPPER_NAME {sorted(cls.mapper_names)}, "
                f"got {name!r}"
            )
        return {
            "is_train": is_train,
            "augmentations": cls.mapper_names[name](cfg),
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": train_ignore_label(cfg),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "bad_sample_policy": cfg.DATALOADER.BAD_SAMPLE_POLICY,
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if not self.is_train:
            raise ValueError(f"{type(self).__name__} is for training only (is_train=False)")
        if self.label_key not in dataset_dict:
            raise ValueError(
                f"dataset dict of {dataset_dict.get('file_name')!r} has no {self.label_key!r}; "
                f"{type(self).__name__} needs it"
            )
        try:
            image, labels = self._read(dataset_dict)
        except DataError as error:
            skip_or_raise(error, self.bad_sample_policy, self.bad_samples)
            return None
        mapped = {
            key: copy.deepcopy(value)
            for key, value in dataset_dict.items()
            if key not in self.dropped_keys
        }
        mapped.update(self._targets(image, labels, dataset_dict))
        return mapped

    def _augment(self, image: np.ndarray, semantic: np.ndarray) -> Tuple[torch.Tensor, T.Transform]:
        """The augmented, padded image uint8 [3, H, W] and the transforms applied; ``semantic``
        [H, W] is the class map the category-area crop reads."""
        aug_input = T.AugInput(image, sem_seg=semantic.astype(np.float64))
        transforms = self.augmentations(aug_input)
        image_t = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return pad_to_multiple(image_t, self.size_divisibility, IMAGE_PAD_VALUE), transforms

    @abstractmethod
    def _read(self, dataset_dict: Dict[str, Any]) -> Tuple[np.ndarray, Any]:
        """The image uint8 [H, W, 3] and its labels, checked (:class:`DataError`)."""

    @abstractmethod
    def _targets(
        self, image: np.ndarray, labels: Any, dataset_dict: Dict[str, Any]
    ) -> Dict[str, Any]:
        """``"image"``, ``"sem_seg"`` and ``"instances"`` of the augmented, padded sample."""
