"""Dataset mappers for semantic segmentation: training (mask-classification targets) and
evaluation, both reading with :mod:`semask.data.image_io` and checking every label map; the
sample checks, padding and bad-sample policy that every training mapper shares."""

import atexit
import copy
import logging
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.projects.point_rend.color_augmentation import ColorAugSSDTransform

from .image_io import DataError, read_image, read_label
from .labels import LABEL_MAPPING_KEY, LabelMapping
from .targets import semantic_instances

__all__ = [
    "BadSampleCounter",
    "DATASET_MAPPERS",
    "MaskFormerSemanticDatasetMapper",
    "SemanticEvalMapper",
    "SEMANTIC_MAPPERS",
    "build_semantic_augmentations",
    "check_label_size",
    "pad_to_multiple",
    "read_checked_image",
    "read_labelled_sample",
    "skip_or_raise",
    "train_ignore_label",
    "training_bad_samples",
]

logger = logging.getLogger(__name__)

# Value of padded image pixels (before normalisation), as in the official recipe.
IMAGE_PAD_VALUE = 128
BAD_SAMPLE_POLICIES = ("error", "skip")
# Offending label values listed in an error message.
MAX_LISTED_VALUES = 8
# INPUT.DATASET_MAPPER_NAME -> whether the training mapper adds "instances" to "image" and
# "sem_seg": mask-classification models (SeMaskMaskFormer) train on those instances, per-pixel
# models (SeMaskFPN) on "sem_seg" alone. Semantic mappers give one instance per class present,
# panoptic ones one per segment, instance ones one per thing (semask.data.panoptic_mapper);
# semask.data.train_mapper.build_train_mapper builds the mapper of each name.
DATASET_MAPPERS = {
    "mask_former_semantic": True,
    "semantic": False,
    "mask_former_panoptic": True,
    "coco_panoptic_lsj": True,
    "mask_former_instance": True,
    "coco_instance_lsj": True,
}
# The names MaskFormerSemanticDatasetMapper serves.
SEMANTIC_MAPPERS = ("mask_former_semantic", "semantic")


class BadSampleCounter:
    """A count shared by the process that creates it and every process it is handed to
    (DataLoader workers, forked or spawned, which get it pickled with the mapper): each count is
    one byte appended to a temporary file, removed when the creating process exits."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="semask-bad-samples-")
        os.close(fd)
        atexit.register(_remove_file, self.path)

    def increment(self) -> int:
        """Add one; the count so far."""
        with open(self.path, "ab") as f:  # appends are atomic across processes
            f.write(b".")
        return self.count

    def reset(self) -> None:
        open(self.path, "wb").close()

    @property
    def count(self) -> int:
        return os.path.getsize(self.path)


def _remove_file(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


_TRAINING_BAD_SAMPLES: Optional[BadSampleCounter] = None


def training_bad_samples() -> BadSampleCounter:
    """The count of training samples skipped in this process and its workers (policy "skip").

    Training mappers keep a reference to it, so that workers count into the main process' counter
    whichever way they are started (fork or spawn).
    """
    global _TRAINING_BAD_SAMPLES
    if _TRAINING_BAD_SAMPLES is None:
        _TRAINING_BAD_SAMPLES = BadSampleCounter()
    return _TRAINING_BAD_SAMPLES


def check_label_values(
    label: np.ndarray, label_file: str, num_classes: int, mapping: LabelMapping
) -> None:
    """Raise :class:`DataError` naming ``label_file`` and the first offending values if the stored
    label map ``label`` [H, W] holds values that ``mapping`` reads as neither a class id
    ``0..num_classes-1`` nor unlabelled."""
    bad = mapping.invalid_values(label, num_classes)
    if not len(bad):
        return
    listed = ", ".join(str(v) for v in bad[:MAX_LISTED_VALUES])
    more = f", ... ({len(bad)} values in all)" if len(bad) > MAX_LISTED_VALUES else ""
    raise DataError(
        f"label map {label_file} has values that are neither {mapping.describe(num_classes)} "
        f"(MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes}) nor the ignore label "
        f"{mapping.ignore_value}: {listed}{more}"
    )


def read_checked_image(dataset_dict: Dict[str, Any], image_format: str) -> np.ndarray:
    """The image uint8 [H, W, 3] of a dataset dict's ``file_name``; raises :class:`DataError`
    naming the file if it cannot be read or is not of the dict's ``height``/``width``."""
    image = read_image(dataset_dict["file_name"], format=image_format)
    try:
        utils.check_image_size(dataset_dict, image)
    except utils.SizeMismatchError as error:
        raise DataError(str(error)) from error
    return image


def check_label_size(
    label: np.ndarray, label_file: str, image: np.ndarray, image_file: str, kind: str = "label map"
) -> None:
    """Raise :class:`DataError` naming both files and sizes if ``label`` [H, W] (a ``kind`` read
    from ``label_file``) is not of the size of ``image`` [H, W, 3] (read from ``image_file``)."""
    if label.shape[:2] != image.shape[:2]:
        raise DataError(
            f"{kind} {label_file} is {label.shape[1]}x{label.shape[0]} (width x height) but its "
            f"image {image_file} is {image.shape[1]}x{image.shape[0]}"
        )


def read_labelled_sample(
    dataset_dict: Dict[str, Any], image_format: str, num_classes: int, ignore_label: int
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The image uint8 [H, W, 3] and, if the dict has ``sem_seg_file_name``, the checked label map
    int64 [H, W] of a dataset dict, before any augmentation.

    Stored labels are read through the dict's :class:`LabelMapping` (key ``label_mapping``; by
    default class ids as stored and ``ignore_label`` unlabelled), so the returned labels are class
    ids ``0..num_classes-1`` and ``ignore_label``.

    Raises :class:`DataError` (naming the files) if a file cannot be read, the image is not of the
    dict's ``height``/``width``, the label map is not of the image's size, or a stored value is
    neither a class id nor unlabelled.
    """
    image = read_checked_image(dataset_dict, image_format)
    label_file = dataset_dict.get("sem_seg_file_name")
    if label_file is None:
        return image, None
    label = read_label(label_file)
    check_label_size(label, label_file, image, dataset_dict["file_name"])
    mapping = dataset_dict.get(LABEL_MAPPING_KEY) or LabelMapping(ignore_value=ignore_label)
    check_label_values(label, label_file, num_classes, mapping)
    return image, mapping.apply(label, ignore_label)


def _check_policy(policy: str) -> str:
    if policy not in BAD_SAMPLE_POLICIES:
        raise ValueError(
            f"DATALOADER.BAD_SAMPLE_POLICY must be one of {BAD_SAMPLE_POLICIES}, got {policy!r}"
        )
    return policy


def skip_or_raise(error: DataError, policy: str, counter: BadSampleCounter) -> None:
    """Handle a bad training sample: raise ``error`` under ``policy`` "error"; under "skip" log
    it as a warning and count it in ``counter`` (the mapper then returns None, so that
    detectron2's ``MapDataset`` takes another sample)."""
    if policy == "error":
        raise error
    count = counter.increment()
    logger.warning(f"skipping bad training sample ({count} so far): {error}")


def pad_to_multiple(array: torch.Tensor, size_divisibility: int, value: float) -> torch.Tensor:
    """``array`` [..., H, W] padded with ``value`` on the bottom/right to the next multiples of
    ``size_divisibility`` (unchanged if it is <= 0)."""
    if size_divisibility <= 0:
        return array
    height, width = array.shape[-2:]
    pad = (0, -width % size_divisibility, 0, -height % size_divisibility)
    return F.pad(array, pad, value=value)


def train_ignore_label(cfg: CfgNode) -> int:
    """The ignore label of the first training set's metadata; ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``
    for a set that has none (detectron2's instance sets)."""
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    return metadata.get("ignore_label", cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)


def build_semantic_augmentations(cfg: CfgNode) -> List[Union[T.Augmentation, T.Transform]]:
    """Official training augmentation: shortest-edge resize, category-aware crop, SSD colour
    jitter, horizontal flip (each as enabled by ``cfg.INPUT``)."""
    ignore_label = train_ignore_label(cfg)
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

    Reads the image and its label map with :func:`read_labelled_sample` (which checks both before
    any augmentation), applies the augmentations to both, pads both on the
    bottom/right to a multiple of ``size_divisibility`` (image with 128, labels with the ignore
    label) and returns the dict with:

    * ``"image"``: uint8 [3, H, W] tensor in ``image_format`` channel order;
    * ``"sem_seg"``: int64 [H, W] labels (``ignore_label`` = unlabelled or padding);
    * ``"instances"`` (when ``with_masks``): :class:`Instances` with ``gt_classes`` [N] and
      ``gt_masks`` (:class:`BitMasks`, [N, H, W]), one per class present, classes ascending
      (:func:`semantic_instances`): the targets a mask-classification model trains on.

    ``INPUT.DATASET_MAPPER_NAME`` (one of :data:`SEMANTIC_MAPPERS`) sets ``with_masks``
    (:data:`DATASET_MAPPERS`).

    A bad sample (:class:`DataError`: unreadable file, size mismatch, bad label values) is raised
    under ``bad_sample_policy`` "error"; under "skip" it is logged as a warning, counted in
    :func:`training_bad_samples` and mapped to None, so that detectron2's ``MapDataset`` takes
    another sample.
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        ignore_label: int,
        num_classes: int,
        size_divisibility: int,
        with_masks: bool = True,
        bad_sample_policy: str = "error",
    ) -> None:
        self.is_train = is_train
        self.tfm_gens = augmentations
        self.img_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility
        self.with_masks = with_masks
        self.num_classes = num_classes
        self.bad_sample_policy = _check_policy(bad_sample_policy)
        self.bad_samples = training_bad_samples()
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            f"[{self.__class__.__name__}] augmentations used in {mode}: {augmentations}"
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> Dict[str, Any]:
        mapper_name = cfg.INPUT.DATASET_MAPPER_NAME
        if mapper_name not in SEMANTIC_MAPPERS:
            raise ValueError(
                f"INPUT.DATASET_MAPPER_NAME must be one of {sorted(SEMANTIC_MAPPERS)}, "
                f"got {mapper_name!r}"
            )
        return {
            "is_train": is_train,
            "augmentations": build_semantic_augmentations(cfg),
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": train_ignore_label(cfg),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "with_masks": DATASET_MAPPERS[mapper_name],
            "bad_sample_policy": cfg.DATALOADER.BAD_SAMPLE_POLICY,
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if not self.is_train:
            raise ValueError(f"{self.__class__.__name__} is for training only (is_train=False)")
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"dataset dict of {dataset_dict.get('file_name')!r} has no 'sem_seg_file_name'; "
                f"{self.__class__.__name__} needs semantic labels"
            )
        try:
            image, label = read_labelled_sample(
                dataset_dict, self.img_format, self.num_classes, self.ignore_label
            )
        except DataError as error:
            skip_or_raise(error, self.bad_sample_policy, self.bad_samples)
            return None
        dataset_dict = copy.deepcopy(dataset_dict)
        del dataset_dict["sem_seg_file_name"]
        dataset_dict.pop(LABEL_MAPPING_KEY, None)

        aug_input = T.AugInput(image, sem_seg=label.astype("double"))
        T.AugmentationList(self.tfm_gens)(aug_input)
        image_t = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        image_t = pad_to_multiple(image_t, self.size_divisibility, IMAGE_PAD_VALUE)
        sem_seg_t = torch.as_tensor(aug_input.sem_seg.astype("long"))
        sem_seg_t = pad_to_multiple(sem_seg_t, self.size_divisibility, self.ignore_label)

        dataset_dict["image"] = image_t
        dataset_dict["sem_seg"] = sem_seg_t
        if self.with_masks:
            dataset_dict["instances"] = semantic_instances(sem_seg_t, self.ignore_label)
        return dataset_dict


class SemanticEvalMapper:
    """Map a dataset dict to an inference input as detectron2's ``DatasetMapper(cfg, False)``
    does, but reading with :func:`read_labelled_sample`: the same reader as training and, when the
    dict has ``sem_seg_file_name``, the same label checks (evaluation is always strict: a skipped
    image would change the metric).

    Returns the dict with ``"image"`` uint8 [3, H, W] in ``image_format`` order after the test
    resize; ``height``/``width`` of the dict (the original size) are kept and
    ``sem_seg_file_name`` and ``label_mapping`` are removed (evaluators read the labels from the
    data set's files, through the same mapping: :class:`semask.evaluation.SemSegEvaluator`).
    """

    @configurable
    def __init__(
        self,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        ignore_label: int,
        num_classes: int,
    ) -> None:
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, cfg: CfgNode, dataset_name: str) -> Dict[str, Any]:
        return {
            "augmentations": utils.build_augmentation(cfg, is_train=False),
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": MetadataCatalog.get(dataset_name).get("ignore_label", 255),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        image, _ = read_labelled_sample(
            dataset_dict, self.image_format, self.num_classes, self.ignore_label
        )
        dataset_dict = copy.deepcopy(dataset_dict)
        dataset_dict.pop("sem_seg_file_name", None)
        dataset_dict.pop(LABEL_MAPPING_KEY, None)
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        dataset_dict["image"] = torch.as_tensor(
            np.ascontiguousarray(aug_input.image.transpose(2, 0, 1))
        )
        return dataset_dict
