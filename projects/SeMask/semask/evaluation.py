"""Semantic evaluators: detectron2's ``SemSegEvaluator`` reading labels as training does, and
Cityscapes evaluation with the official cityscapesScripts, on the installed numpy.

:class:`SemSegEvaluator` reads ground truth with :func:`semask.data.read_label` through the data
set's :class:`~semask.data.labels.LabelMapping` (metadata ``label_mapping``), so a folder data set
with ``reduce_zero_label`` or its own ignore value is scored on the labels it was trained on.

detectron2's :class:`~detectron2.evaluation.CityscapesSemSegEvaluator` runs cityscapesScripts'
``evalPixelLevelSemanticLabeling``, which calls ``np.in1d`` (removed in numpy 2.4). While it runs,
that one module sees a numpy that also has ``in1d``; numpy itself and every other module are left
as they are. The script's printed tables go to the log, and its ``sys.exit`` on an error becomes a
``RuntimeError`` with its message.
"""

import contextlib
import glob
import importlib
import io
import logging
import os
from collections import OrderedDict
from types import ModuleType
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import CityscapesSemSegEvaluator as _D2CityscapesSemSegEvaluator
from detectron2.evaluation import SemSegEvaluator as _D2SemSegEvaluator

from .data.image_io import read_label
from .data.labels import LabelMapping

CITYSCAPES_SCRIPT = "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling"
GT_PATTERN = "*_gtFine_labelIds.png"


class NumpyWithIn1d:
    """numpy with ``in1d`` added (a flat ``np.isin``, what numpy < 2.4 returned)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False) -> np.ndarray:
        return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


@contextlib.contextmanager
def numpy_with_in1d(module: ModuleType) -> Iterator[None]:
    """Let ``module``'s global ``np`` have ``in1d`` while the context runs (if numpy lacks it)."""
    original = module.np
    if not hasattr(original, "in1d"):
        module.np = NumpyWithIn1d()
    try:
        yield
    finally:
        module.np = original


class CityscapesSemSegEvaluator(_D2CityscapesSemSegEvaluator):
    """detectron2's Cityscapes evaluator (official IoU, iIoU, IoU_sup, iIoU_sup over the 19
    classes, from ``*_gtFine_labelIds.png`` and ``*_gtFine_instanceIds.png`` under the data set's
    ``gt_dir``) made to run on numpy >= 2.4 and to fail with messages that name the files."""

    def evaluate(self) -> Optional["OrderedDict[str, Any]"]:
        gt_dir = self._metadata.gt_dir
        if not glob.glob(os.path.join(gt_dir, "*", GT_PATTERN)):
            raise FileNotFoundError(
                f"Cityscapes evaluation: no {GT_PATTERN} under {gt_dir}/<city>/ (they come with "
                "gtFine_trainvaltest.zip; see datasets/README.md)"
            )
        script = importlib.import_module(CITYSCAPES_SCRIPT)
        printed = io.StringIO()
        try:
            with numpy_with_in1d(script), contextlib.redirect_stdout(printed):
                return super().evaluate()
        except SystemExit:
            lines = [line for line in printed.getvalue().splitlines() if line.strip()]
            raise RuntimeError(
                f"Cityscapes evaluation script stopped: {lines[-1] if lines else 'no message'}"
            ) from None
        finally:
            if printed.getvalue().strip():
                logging.getLogger(__name__).info(printed.getvalue())


class SemSegEvaluator(_D2SemSegEvaluator):
    """detectron2's semantic evaluator (mIoU, fwIoU, mACC, pACC, per-class IoU and accuracy) with
    the ground truth read by :func:`read_label` and mapped by the data set's ``label_mapping``
    (stored values as they are, with the metadata ``ignore_label``, where it has none)."""

    def __init__(
        self, dataset_name: str, distributed: bool = True, output_dir: Optional[str] = None
    ) -> None:
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)
        mapping = MetadataCatalog.get(dataset_name).get("label_mapping")
        self._label_mapping = mapping or LabelMapping(ignore_value=self._ignore_label)

    def ground_truth(self, file_name: str) -> np.ndarray:
        """The training labels int64 [H, W] of the image ``file_name`` of the data set."""
        stored = read_label(self.input_file_to_gt_file[file_name])
        return self._label_mapping.apply(stored, self._ignore_label)

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, torch.Tensor]]) -> None:
        """Add each prediction (``sem_seg`` [K, H, W] scores) against its ground truth to the
        confusion matrix; keep its encoded segments for ``sem_seg_predictions.json``."""
        size = self._num_classes + 1
        for input, output in zip(inputs, outputs):
            pred = output["sem_seg"].argmax(dim=0).to(self._cpu_device).numpy().astype(np.int64)
            gt = self.ground_truth(input["file_name"])
            gt[gt == self._ignore_label] = self._num_classes
            pairs = np.bincount(size * pred.reshape(-1) + gt.reshape(-1), minlength=size * size)
            self._conf_matrix += pairs.reshape(size, size)
            self._predictions.extend(self.encode_json_sem_seg(pred, input["file_name"]))
