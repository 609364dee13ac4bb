"""Start-up checks of a config's data sets (``DATASETS.TRAIN``, ``DATASETS.TEST``): each is
registered, has the model's class count and ignore value, and each test set has an evaluator for
the enabled outputs. Only metadata is read."""

from typing import List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from ..data.metadata import dataset_classes
from .checker import Checker
from .evaluators import SEMANTIC_TYPES, evaluation_kinds, nothing_to_evaluate


def _semantic_datasets(registered: Sequence[str]) -> List[str]:
    return sorted(
        name
        for name in registered
        if MetadataCatalog.get(name).get("evaluator_type") in SEMANTIC_TYPES
    )


def missing_classes(metadata: Metadata) -> str:
    """Why a data set without :func:`dataset_classes` cannot be used."""
    error = metadata.get("dataset_error")
    return f"cannot be used: {error}" if error else "has neither stuff_classes nor thing_classes"


def _check_evaluation(checker: Checker, name: str) -> None:
    """A DATASETS.TEST data set has an evaluator for the enabled outputs (from its metadata:
    semantic label maps of a panoptic data set are taken to exist)."""
    evaluator_type = MetadataCatalog.get(name).get("evaluator_type")
    if not evaluation_kinds(checker.cfg, evaluator_type, semantic_labels=True):
        checker.fail("DATASETS.TEST", name, nothing_to_evaluate(name, evaluator_type))


def check_datasets(checker: Checker) -> None:
    """Every data set of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` is registered and has
    ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` classes and its ignore value; every test set has an
    evaluator for the enabled ``MODEL.MASK_FORMER.TEST.*_ON`` outputs."""
    num_classes = checker.get("MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    ignore_value = checker.get("MODEL.SEM_SEG_HEAD.IGNORE_VALUE")
    registered = DatasetCatalog.list()
    for key in ("DATASETS.TRAIN", "DATASETS.TEST"):
        for name in checker.get(key):
            if name not in registered:
                checker.fail(
                    key,
                    name,
                    f"data set {name!r} is not registered; semantic data sets registered: "
                    f"{', '.join(_semantic_datasets(registered))} (see datasets/README.md)",
                )
                continue
            metadata = MetadataCatalog.get(name)
            classes = dataset_classes(metadata)
            if key == "DATASETS.TEST":
                _check_evaluation(checker, name)
            if classes is None:
                checker.fail(key, name, f"data set {name!r} {missing_classes(metadata)}")
            elif len(classes) != num_classes:
                checker.fail(
                    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
                    num_classes,
                    f"data set {name!r} ({key}) has {len(classes)} classes",
                )
            ignore_label = metadata.get("ignore_label")
            if ignore_label is not None and ignore_label != ignore_value:
                checker.fail(
                    "MODEL.SEM_SEG_HEAD.IGNORE_VALUE",
                    ignore_value,
                    f"data set {name!r} ({key}) marks unlabelled pixels with {ignore_label}",
                )
