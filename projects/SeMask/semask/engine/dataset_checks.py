"""Start-up checks of a config's data sets (``DATASETS.TRAIN``, ``DATASETS.TEST``): each is
registered, has the model's class count and ignore value, and each test set has an evaluator for
the enabled outputs, with the packages it needs installed. Only metadata is read."""

import difflib
from typing import Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from ..data.metadata import dataset_classes
from .checker import Checker
from .evaluators import (
    INSTANCE_TYPES,
    PANOPTIC_TYPES,
    SEMANTIC_TYPES,
    TEST_KEY,
    evaluation_kinds,
    missing_package,
    nothing_to_evaluate,
)

# The data sets a config is for, by its richest enabled output: (the MODEL.MASK_FORMER.TEST key
# that enables it, the kind, the evaluator types of that kind's data sets).
OUTPUT_KINDS = (
    ("PANOPTIC_ON", "panoptic", PANOPTIC_TYPES),
    ("INSTANCE_ON", "instance", INSTANCE_TYPES),
    ("SEMANTIC_ON", "semantic", SEMANTIC_TYPES),
)
CLOSE_MATCHES = 3


def _not_registered(checker: Checker, name: str, registered: Sequence[str]) -> str:
    """Why data set ``name`` cannot be used: the registered names closest to it, then the
    registered data sets of the config's richest enabled output (:data:`OUTPUT_KINDS`; semantic
    if none is enabled)."""
    test = checker.cfg.MODEL.MASK_FORMER.TEST
    key, kind, types = next((entry for entry in OUTPUT_KINDS if test[entry[0]]), OUTPUT_KINDS[-1])
    fitting = sorted(n for n in registered if MetadataCatalog.get(n).get("evaluator_type") in types)
    close = difflib.get_close_matches(name, registered, n=CLOSE_MATCHES)
    closest = f"; closest: {', '.join(map(repr, close))}" if close else ""
    return (
        f"data set {name!r} is not registered{closest}; {kind} data sets registered (for "
        f"{TEST_KEY}.{key}): {', '.join(fitting) or 'none'} (see datasets/README.md)"
    )


def missing_classes(metadata: Metadata) -> str:
    """Why a data set without :func:`dataset_classes` cannot be used."""
    error = metadata.get("dataset_error")
    return f"cannot be used: {error}" if error else "has neither stuff_classes nor thing_classes"


def _check_evaluation(checker: Checker, name: str) -> None:
    """A DATASETS.TEST data set has an evaluator for the enabled outputs (from its metadata:
    semantic label maps of a panoptic data set are taken to exist), and the packages it needs."""
    evaluator_type = MetadataCatalog.get(name).get("evaluator_type")
    kinds = evaluation_kinds(checker.cfg, evaluator_type, semantic_labels=True)
    if not kinds:
        checker.fail("DATASETS.TEST", name, nothing_to_evaluate(name, evaluator_type))
        return
    missing = missing_package(kinds)
    if missing:
        checker.fail("DATASETS.TEST", name, f"data set {name!r} is scored with {missing}")


def check_datasets(checker: Checker) -> None:
    """Every data set of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` is registered and has
    ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` classes and its ignore value; every test set has an
    evaluator for the enabled ``MODEL.MASK_FORMER.TEST.*_ON`` outputs and its packages."""
    num_classes = checker.get("MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    ignore_value = checker.get("MODEL.SEM_SEG_HEAD.IGNORE_VALUE")
    registered = DatasetCatalog.list()
    for key in ("DATASETS.TRAIN", "DATASETS.TEST"):
        for name in checker.get(key):
            if name not in registered:
                checker.fail(key, name, _not_registered(checker, name, registered))
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
