"""``MODEL.SEM_SEG_HEAD.NUM_CLASSES 0``: the class count of the training set."""

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data.metadata import dataset_classes
from .dataset_checks import missing_classes
from .validation import ConfigError

# Value of MODEL.SEM_SEG_HEAD.NUM_CLASSES that stands for the first training set's class count.
NUM_CLASSES_FROM_DATASET = 0
KEY = "MODEL.SEM_SEG_HEAD.NUM_CLASSES"


def resolve_num_classes(cfg: CfgNode) -> None:
    """Set ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` of the unfrozen ``cfg`` to the number of
    classes (:func:`~semask.data.metadata.dataset_classes`: ``stuff_classes``, else
    ``thing_classes``) of ``DATASETS.TRAIN[0]`` if it is :data:`NUM_CLASSES_FROM_DATASET`; any
    other value is left for :func:`~semask.engine.validate_config` to check against every data
    set. Reads only metadata; raises :class:`ConfigError` naming the key and the data set if there
    is no registered training set with classes."""
    if cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES != NUM_CLASSES_FROM_DATASET:
        return
    prefix = f"{KEY} = {NUM_CLASSES_FROM_DATASET} (the training set's class count)"
    if not cfg.DATASETS.TRAIN:
        raise ConfigError(f"invalid config:\n  {prefix}: DATASETS.TRAIN is empty")
    name = cfg.DATASETS.TRAIN[0]
    if name not in DatasetCatalog.list():
        raise ConfigError(
            f"invalid config:\n  {prefix}: DATASETS.TRAIN data set {name!r} is not registered "
            "(see datasets/README.md)"
        )
    metadata = MetadataCatalog.get(name)
    classes = dataset_classes(metadata)
    if classes is None:
        raise ConfigError(
            f"invalid config:\n  {prefix}: DATASETS.TRAIN data set {name!r} "
            f"{missing_classes(metadata)}"
        )
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = len(classes)
