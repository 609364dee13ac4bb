"""The SeMask trainer: detectron2's DefaultTrainer with the official recipe, and ``setup_cfg``."""

import argparse
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import (
    DefaultTrainer,
    HookBase,
    TrainerBase,
    create_ddp_model,
    default_setup,
)
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn

from .. import add_semask_config
from ..checkpoint import SeMaskCheckpointer
from ..compat import build_fallback_train_loader
from ..curves import TrainingCurvesHook
from ..data import MaskFormerSemanticDatasetMapper, SemanticEvalMapper, training_bad_samples
from ..evaluation import CityscapesSemSegEvaluator, SemSegEvaluator
from ..modeling.meta_arch import SemanticSegmentorWithTTA
from ..report import SemSegReportEvaluator
from .amp import FiniteSimpleTrainer, MixedPrecisionTrainer, amp_dtype
from .bad_samples import BadSampleReport
from .num_classes import resolve_num_classes
from .optim import build_optimizer
from .validation import validate_config


class Trainer(DefaultTrainer):
    """DefaultTrainer with SeMask's mapper, optimizer, poly LR schedule, evaluators, mixed
    precision (``SOLVER.AMP``) and DDP on CPUs (gloo) as well as GPUs."""

    def __init__(self, cfg: CfgNode) -> None:
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        device_type = torch.device(cfg.MODEL.DEVICE).type
        ddp_kwargs = {} if device_type == "cuda" else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        dtype = amp_dtype(cfg)
        if dtype is None:
            self._trainer = FiniteSimpleTrainer(model, data_loader, optimizer)
        else:
            self._trainer = MixedPrecisionTrainer(
                model, data_loader, optimizer, dtype=dtype, device_type=device_type
            )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SeMaskCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE,
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer) -> Any:
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Any:
        """Training loader; its skipped bad samples are counted from zero (one run per process)."""
        training_bad_samples().reset()
        return build_fallback_train_loader(cfg, MaskFormerSemanticDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Any:
        """Inference loader reading as training does, checking label maps (always strict)."""
        return build_detection_test_loader(
            cfg, dataset_name, mapper=SemanticEvalMapper(cfg, dataset_name)
        )

    def build_hooks(self) -> List[HookBase]:
        """detectron2's hooks, the report of skipped bad training samples and, after the writers,
        the training curves (``OUTPUT_DIR/training_curves.png``)."""
        return super().build_hooks() + [
            BadSampleReport(training_bad_samples()),
            TrainingCurvesHook(self.cfg.OUTPUT_DIR),
        ]

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None
    ) -> DatasetEvaluator:
        """SemSegEvaluator (with the report of :mod:`semask.report` in ``output_folder/report``
        if ``TEST.REPORT.ENABLED``), or the official Cityscapes evaluation
        (:mod:`semask.evaluation`), by the data set's ``evaluator_type``."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if evaluator_type == "sem_seg" and cfg.TEST.REPORT.ENABLED:
            evaluator = SemSegReportEvaluator(
                dataset_name,
                distributed=True,
                output_dir=output_folder,
                num_worst_images=cfg.TEST.REPORT.NUM_WORST_IMAGES,
            )
        elif evaluator_type == "sem_seg":
            evaluator = SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)
        elif evaluator_type == "cityscapes_sem_seg":
            evaluator = CityscapesSemSegEvaluator(dataset_name)
        else:
            raise ValueError(
                f"no semantic-segmentation evaluator for data set {dataset_name!r} "
                f"(its evaluator_type is {evaluator_type!r})"
            )
        return DatasetEvaluators([evaluator])

    @classmethod
    def test_with_TTA(cls, cfg: CfgNode, model: nn.Module) -> Dict[str, Any]:
        """Evaluate with multi-scale + flip test-time augmentation (``TEST.AUG``)."""
        logging.getLogger(__name__).info("Running inference with test-time augmentation ...")
        evaluators = [
            cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA"))
            for name in cfg.DATASETS.TEST
        ]
        results = cls.test(cfg, SemanticSegmentorWithTTA(cfg, model), evaluators)
        return OrderedDict((f"{task}_TTA", value) for task, value in results.items())


def build_cfg(config_file: str, opts: List[str]) -> CfgNode:
    """A frozen config: detectron2 defaults + SeMask keys + ``config_file`` + ``opts``.

    ``MODEL.SEM_SEG_HEAD.NUM_CLASSES 0`` becomes the training set's class count
    (:func:`resolve_num_classes`). A CUDA ``MODEL.DEVICE`` falls back to ``cpu`` when no GPU is
    available.
    """
    cfg = get_cfg()
    add_semask_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    resolve_num_classes(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available: MODEL.DEVICE set to cpu")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Build the config from command-line ``args`` (detectron2's argument parser), check it
    (:func:`validate_config`: a :class:`ConfigError` names every bad key before anything is
    written or loaded) and set up the run with detectron2's ``default_setup``: output folder,
    loggers (``semask``'s too), environment report, ``config.yaml`` in the output folder, seeds."""
    cfg = build_cfg(args.config_file, args.opts)
    validate_config(cfg)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="semask")
    return cfg
