"""Data: the image reader, dataset mappers, mask-classification targets, the quick-start set and
dataset registration.

Importing this package registers the data sets of :mod:`semask.data.builtin` under
``$DETECTRON2_DATASETS`` (default ``datasets``), folder data sets (:mod:`semask.data.folder`)
included.
"""

import os

from .builtin import register_all
from .folder import FolderDatasetError, register_folder_dataset, register_folder_datasets
from .image_io import DataError, ImageReadError, read_image, read_label, to_uint8_image
from .instance_mapper import MaskFormerInstanceDatasetMapper
from .labels import LabelMapping
from .mapper import (
    MaskFormerSemanticDatasetMapper,
    SemanticEvalMapper,
    build_semantic_augmentations,
    training_bad_samples,
)
from .panoptic_mapper import MaskFormerPanopticDatasetMapper
from .target_mapper import build_lsj_augmentations
from .targets import sem_seg_to_masks
from .train_mapper import build_train_mapper

register_all(os.getenv("DETECTRON2_DATASETS", "datasets"))

__all__ = [
    "DataError",
    "FolderDatasetError",
    "ImageReadError",
    "LabelMapping",
    "MaskFormerInstanceDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "SemanticEvalMapper",
    "build_lsj_augmentations",
    "build_semantic_augmentations",
    "build_train_mapper",
    "read_image",
    "read_label",
    "register_folder_dataset",
    "register_folder_datasets",
    "sem_seg_to_masks",
    "to_uint8_image",
    "training_bad_samples",
]
