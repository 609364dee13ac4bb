"""The SeMask trainer: detectron2's DefaultTrainer with the official recipe."""

import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader
from detectron2.engine import (
    DefaultTrainer,
    HookBase,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
)
from detectron2.evaluation import DatasetEvaluator
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn

from ..checkpoint import SeMaskCheckpointer
from ..compat import build_fallback_train_loader
from ..curves import TrainingCurvesHook
from ..data import SemanticEvalMapper, build_train_mapper, training_bad_samples
from ..modeling.meta_arch import SemanticSegmentorWithTTA
from .amp import FiniteSimpleTrainer, MixedPrecisionTrainer, amp_dtype
from .bad_samples import BadSampleReport
from .evaluators import build_evaluators
from .optim import build_optimizer


def ddp_arguments(cfg: CfgNode) -> Dict[str, Any]:
    """``DistributedDataParallel`` arguments for ``MODEL.DEVICE``: ``create_ddp_model``'s default
    ``device_ids=[local rank]`` is for CUDA modules only; CPU modules (gloo) need ``None``."""
    return {} if torch.device(cfg.MODEL.DEVICE).type == "cuda" else {"device_ids": None}


class Trainer(DefaultTrainer):
    """DefaultTrainer with SeMask's mapper, optimizer, poly LR schedule, evaluators, mixed
    precision (``SOLVER.AMP``) and DDP on CPUs (gloo) as well as GPUs.

    ``__init__`` restates ``DefaultTrainer.__init__`` with three changes (the DDP arguments, the
    step runner of :meth:`build_step_runner`, :class:`SeMaskCheckpointer`): detectron2 0.6 and its
    main branch build all three inline, with no hook. Replacing them after
    ``DefaultTrainer.__init__`` cannot work: its DDP wrapper fails for CPU modules, its
    ``PeriodicCheckpointer`` hook keeps the checkpointer built there, and its ``SimpleTrainer``
    already started iterating the data loader. ``tests/test_upstream_copies.py`` fails when
    detectron2's ``__init__`` changes.
    """

    def __init__(self, cfg: CfgNode) -> None:
        # Restates DefaultTrainer.__init__ of detectron2 0.6 (same on main); see the docstring.
        TrainerBase.__init__(self)
        logger = logging.getLogger("detectron2")
        if not logger.isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_arguments(cfg))
        self._trainer = self.build_step_runner(cfg, model, data_loader, optimizer)
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
    def build_step_runner(
        cls, cfg: CfgNode, model: nn.Module, data_loader: Any, optimizer: torch.optim.Optimizer
    ) -> SimpleTrainer:
        """What runs one training step: :class:`MixedPrecisionTrainer` in the dtype of
        ``SOLVER.AMP`` (:func:`amp_dtype`) when it is enabled, else :class:`FiniteSimpleTrainer`;
        both stop on non-finite losses."""
        dtype = amp_dtype(cfg)
        if dtype is None:
            return FiniteSimpleTrainer(model, data_loader, optimizer)
        device_type = torch.device(cfg.MODEL.DEVICE).type
        return MixedPrecisionTrainer(
            model, data_loader, optimizer, dtype=dtype, device_type=device_type
        )

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer) -> Any:
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Any:
        """Training loader with the mapper of ``INPUT.DATASET_MAPPER_NAME``
        (:func:`build_train_mapper`); its skipped bad samples are counted from zero (one run per
        process)."""
        training_bad_samples().reset()
        return build_fallback_train_loader(cfg, build_train_mapper(cfg))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Any:
        """Inference loader reading as training does, checking the label maps of data sets that
        have them (always strict); panoptic and instance evaluators read their own ground truth."""
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
        """The data set's evaluators by its ``evaluator_type`` and the enabled outputs
        (:mod:`semask.engine.evaluators`), writing into ``output_folder`` (default
        ``OUTPUT_DIR/inference``)."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        return build_evaluators(cfg, dataset_name, output_folder)

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
