"""The training mapper of each ``INPUT.DATASET_MAPPER_NAME`` (:data:`DATASET_MAPPERS`)."""

from typing import Any, Callable, Dict, Optional

from detectron2.config import CfgNode

from .instance_mapper import INSTANCE_MAPPERS, MaskFormerInstanceDatasetMapper
from .mapper import DATASET_MAPPERS, SEMANTIC_MAPPERS, MaskFormerSemanticDatasetMapper
from .panoptic_mapper import PANOPTIC_MAPPERS, MaskFormerPanopticDatasetMapper
from .target_mapper import build_lsj_augmentations

__all__ = ["LSJ_MAPPERS", "MAPPER_CLASSES", "build_train_mapper"]

# INPUT.DATASET_MAPPER_NAME -> the class of its training mapper.
MAPPER_CLASSES: Dict[str, type] = {
    name: mapper_class
    for mapper_class, names in (
        (MaskFormerSemanticDatasetMapper, SEMANTIC_MAPPERS),
        (MaskFormerPanopticDatasetMapper, PANOPTIC_MAPPERS),
        (MaskFormerInstanceDatasetMapper, INSTANCE_MAPPERS),
    )
    for name in names
}
# The names with large-scale jitter (INPUT.IMAGE_SIZE, MIN_SCALE, MAX_SCALE).
LSJ_MAPPERS = tuple(
    name
    for name, augmentations in {**PANOPTIC_MAPPERS, **INSTANCE_MAPPERS}.items()
    if augmentations is build_lsj_augmentations
)


def build_train_mapper(cfg: CfgNode) -> Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """The training mapper of ``cfg.INPUT.DATASET_MAPPER_NAME``, built from ``cfg``: semantic
    (:class:`MaskFormerSemanticDatasetMapper`), panoptic (:class:`MaskFormerPanopticDatasetMapper`)
    or instance (:class:`MaskFormerInstanceDatasetMapper`). Raises ValueError for another name."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in MAPPER_CLASSES:
        raise ValueError(
            f"INPUT.DATASET_MAPPER_NAME must be one of {sorted(DATASET_MAPPERS)}, got {name!r}"
        )
    return MAPPER_CLASSES[name](cfg, True)
