"""The evaluators of a test set, by its ``evaluator_type`` and the outputs the model gives
(``MODEL.MASK_FORMER.TEST.{SEMANTIC,PANOPTIC,INSTANCE}_ON``), as Mask2Former's trainer picks them:

* ``sem_seg``: the semantic evaluator (:func:`semantic_evaluator`);
* ``cityscapes_sem_seg``: :class:`~semask.evaluation.CityscapesSemSegEvaluator`;
* ``coco_panoptic_seg``, ``ade20k_panoptic_seg``: the semantic evaluator with ``SEMANTIC_ON``
  where the data set has ``sem_seg_file_name``, ``COCOPanopticEvaluator`` (PQ) with
  ``PANOPTIC_ON``, :class:`~semask.instance_evaluation.ThingInstanceEvaluator` (mask AP of the
  thing classes) with ``INSTANCE_ON``;
* ``coco`` (COCO and ADE20K instance sets: every class a thing, numbered ``0..T-1``):
  ``COCOEvaluator`` (mask AP) with ``INSTANCE_ON``.

Instance evaluation scores masks only (``segm``): the model's boxes are its masks' bounding boxes,
so box AP would add no information and double the time.
"""

import importlib
import importlib.util
import logging
from typing import List, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
)

from ..evaluation import CityscapesSemSegEvaluator, SemSegEvaluator
from ..instance_evaluation import ThingInstanceEvaluator
from ..report import SemSegReportEvaluator

SEMANTIC = "sem_seg"
CITYSCAPES = "cityscapes_sem_seg"
PANOPTIC = "panoptic_seg"
THING_INSTANCES = "thing_instances"
COCO_INSTANCES = "coco_instances"

SEMANTIC_TYPES = ("sem_seg", "cityscapes_sem_seg")
PANOPTIC_TYPES = ("coco_panoptic_seg", "ade20k_panoptic_seg")
INSTANCE_TYPES = ("coco",)
EVALUATOR_TYPES = SEMANTIC_TYPES + PANOPTIC_TYPES + INSTANCE_TYPES
INSTANCE_TASKS = ("segm",)
PANOPTICAPI_INSTALL = (
    "pip install --no-deps panopticapi-lite (what `make env` does) or "
    "pip install git+https://github.com/cocodataset/panopticapi"
)
TEST_KEY = "MODEL.MASK_FORMER.TEST"

logger = logging.getLogger(__name__)


def evaluation_kinds(cfg: CfgNode, evaluator_type: str, *, semantic_labels: bool) -> List[str]:
    """What is scored on a data set of ``evaluator_type``: some of :data:`SEMANTIC`,
    :data:`CITYSCAPES`, :data:`PANOPTIC`, :data:`THING_INSTANCES`, :data:`COCO_INSTANCES` (see
    the module's list); ``semantic_labels``: whether its dicts have ``sem_seg_file_name``.
    ``semantic_labels`` matters for panoptic types only. Empty if nothing applies."""
    test = cfg.MODEL.MASK_FORMER.TEST
    if evaluator_type == "sem_seg":
        return [SEMANTIC]
    if evaluator_type == "cityscapes_sem_seg":
        return [CITYSCAPES]
    if evaluator_type in INSTANCE_TYPES:
        return [COCO_INSTANCES] if test.INSTANCE_ON else []
    if evaluator_type not in PANOPTIC_TYPES:
        return []
    enabled = [
        (SEMANTIC, test.SEMANTIC_ON and semantic_labels),
        (PANOPTIC, test.PANOPTIC_ON),
        (THING_INSTANCES, test.INSTANCE_ON),
    ]
    return [kind for kind, on in enabled if on]


def nothing_to_evaluate(dataset_name: str, evaluator_type: str) -> str:
    """Why no evaluator applies to a data set, with what would make one apply."""
    prefix = f"data set {dataset_name!r} (evaluator_type {evaluator_type!r})"
    if evaluator_type in INSTANCE_TYPES:
        return f"{prefix} is scored on instances: it needs {TEST_KEY}.INSTANCE_ON True"
    if evaluator_type in PANOPTIC_TYPES:
        return (
            f"{prefix} has nothing to score: enable {TEST_KEY}.PANOPTIC_ON or INSTANCE_ON, or "
            "SEMANTIC_ON for a data set with semantic label maps (sem_seg_file_name)"
        )
    return f"no evaluator for {prefix}; known evaluator types: {list(EVALUATOR_TYPES)}"


def missing_package(kinds: Sequence[str]) -> Optional[str]:
    """The score of ``kinds`` whose package is not installed, with the package and how to install
    it; None if nothing is missing. Looked up with ``importlib.util.find_spec`` (nothing is
    imported). pycocotools (mask AP) is not looked up: detectron2 requires it, and nothing here
    imports without it."""
    if PANOPTIC in kinds and importlib.util.find_spec("panopticapi") is None:
        return (
            f"PQ ({TEST_KEY}.PANOPTIC_ON), which needs panopticapi (not installed): "
            f"{PANOPTICAPI_INSTALL}"
        )
    return None


def has_semantic_labels(dataset_name: str) -> bool:
    """Whether every dict of the data set has ``sem_seg_file_name`` (loads the dicts)."""
    return all("sem_seg_file_name" in record for record in DatasetCatalog.get(dataset_name))


def require_panopticapi() -> None:
    """Raise ImportError saying how to install panopticapi if it cannot be imported."""
    try:
        importlib.import_module("panopticapi.evaluation")
    except ImportError as error:
        raise ImportError(
            f"panoptic evaluation (COCOPanopticEvaluator) needs panopticapi: {PANOPTICAPI_INSTALL}"
        ) from error


def semantic_evaluator(cfg: CfgNode, dataset_name: str, output_folder: str) -> SemSegEvaluator:
    """The semantic evaluator, with the report of :mod:`semask.report` in
    ``output_folder/report`` if ``TEST.REPORT.ENABLED``."""
    if cfg.TEST.REPORT.ENABLED:
        return SemSegReportEvaluator(
            dataset_name,
            distributed=True,
            output_dir=output_folder,
            num_worst_images=cfg.TEST.REPORT.NUM_WORST_IMAGES,
        )
    return SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)


def _build(kind: str, cfg: CfgNode, dataset_name: str, output_folder: str) -> DatasetEvaluator:
    if kind == SEMANTIC:
        return semantic_evaluator(cfg, dataset_name, output_folder)
    if kind == CITYSCAPES:
        return CityscapesSemSegEvaluator(dataset_name)
    if kind == PANOPTIC:
        require_panopticapi()
        return COCOPanopticEvaluator(dataset_name, output_folder)
    if kind == THING_INSTANCES:
        return ThingInstanceEvaluator(dataset_name, output_folder, tasks=INSTANCE_TASKS)
    return COCOEvaluator(
        dataset_name, tasks=INSTANCE_TASKS, output_dir=output_folder, use_fast_impl=False
    )


def build_evaluators(cfg: CfgNode, dataset_name: str, output_folder: str) -> DatasetEvaluators:
    """The evaluators of the data set (the module's list), writing into ``output_folder``.

    Raises ValueError naming the data set and its ``evaluator_type`` if none applies, and
    ImportError saying how to install panopticapi if panoptic evaluation needs it.
    """
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    semantic_wanted = evaluator_type in PANOPTIC_TYPES and cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON
    semantic_labels = semantic_wanted and has_semantic_labels(dataset_name)
    kinds = evaluation_kinds(cfg, evaluator_type, semantic_labels=semantic_labels)
    if not kinds:
        raise ValueError(nothing_to_evaluate(dataset_name, evaluator_type))
    if semantic_wanted and not semantic_labels:
        logger.warning(
            f"{TEST_KEY}.SEMANTIC_ON: data set {dataset_name!r} has no semantic label maps "
            "(sem_seg_file_name), so its semantic predictions are not scored"
        )
    return DatasetEvaluators([_build(kind, cfg, dataset_name, output_folder) for kind in kinds])
