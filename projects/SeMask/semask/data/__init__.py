"""Data: the image reader, dataset mappers, mask-classification targets, the quick-start set and
dataset registration.

Importing this package registers the data sets of :mod:`semask.data.builtin` under
``$DETECTRON2_DATASETS`` (default ``datasets``).
"""

import os

from .builtin import register_all
from .image_io import DataError, ImageReadError, read_image, read_label, to_uint8_image
from .mapper import (
    MaskFormerSemanticDatasetMapper,
    SemanticEvalMapper,
    build_semantic_augmentations,
    training_bad_samples,
)
from .targets import sem_seg_to_masks

register_all(os.getenv("DETECTRON2_DATASETS", "datasets"))

__all__ = [
    "DataError",
    "ImageReadError",
    "MaskFormerSemanticDatasetMapper",
    "SemanticEvalMapper",
    "build_semantic_augmentations",
    "read_image",
    "read_label",
    "sem_seg_to_masks",
    "to_uint8_image",
    "training_bad_samples",
]
