"""Data: dataset mapper, mask-classification targets, the quick-start set and dataset registration.

Importing this package registers the data sets of :mod:`semask.data.builtin` under
``$DETECTRON2_DATASETS`` (default ``datasets``).
"""

import os

from .builtin import register_all
from .mapper import MaskFormerSemanticDatasetMapper, build_semantic_augmentations
from .targets import sem_seg_to_masks

register_all(os.getenv("DETECTRON2_DATASETS", "datasets"))

__all__ = ["MaskFormerSemanticDatasetMapper", "build_semantic_augmentations", "sem_seg_to_masks"]
