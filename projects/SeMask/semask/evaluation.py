"""Cityscapes semantic evaluation with the official cityscapesScripts, on the installed numpy.

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
from typing import Any, Iterator, Optional

import numpy as np
from detectron2.evaluation import CityscapesSemSegEvaluator as _D2CityscapesSemSegEvaluator

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
