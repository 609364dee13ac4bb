"""Training curves: loss terms, learning rate and validation mIoU over iterations, read from the
``metrics.json`` that detectron2's ``JSONWriter`` appends to, drawn into one PNG; and the hook that
draws it when training ends."""

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from detectron2.engine import HookBase
from detectron2.utils import comm
from matplotlib.figure import Figure

from .report_figures import save_figure

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
# A loss term of the last decoder layer ("loss_ce"), not of a deep-supervision layer ("loss_ce_3").
FINAL_LOSS = re.compile(r"^loss_[a-z_]*[a-z]$")
MIOU_SUFFIX = "/mIoU"
# Series of at most this many points are drawn with a marker at each point.
MARKED_POINTS = 30

Records = Dict[int, Dict[str, float]]


def read_metrics(path: Union[str, Path]) -> Records:
    """iteration -> {key: value} of a detectron2 ``metrics.json`` (one JSON object a line).

    Lines of one iteration are merged; a later line wins (a resumed run rewrites iterations). A
    line that is not a JSON object with an ``iteration`` (one cut short by a killed run) is skipped
    with a warning naming the file and line.
    """
    records: Records = {}
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                iteration = int(record.pop("iteration"))
            except (ValueError, KeyError, TypeError, AttributeError):
                logger.warning(f"{path} line {number}: not a metrics record, skipped")
                continue
            values = {k: float(v) for k, v in record.items() if isinstance(v, (int, float))}
            records.setdefault(iteration, {}).update(values)
    return dict(sorted(records.items()))


def series(records: Records, key: str) -> List[List[float]]:
    """[iterations, values] of ``key`` over ``records`` (iterations without it or with a
    non-finite value left out)."""
    points = [(it, values[key]) for it, values in records.items() if key in values]
    points = [(it, value) for it, value in points if math.isfinite(value)]
    return [[it for it, _ in points], [value for _, value in points]]


def _keys(records: Records) -> List[str]:
    return sorted({key for values in records.values() for key in values})


def _plot_lines(axes, records: Records, keys: Sequence[str], title: str, marker: str = "") -> None:
    for key in keys:
        iterations, values = series(records, key)
        shown = marker or ("." if len(iterations) <= MARKED_POINTS else "")
        axes.plot(iterations, values, marker=shown, linewidth=1.2, label=key)
    axes.set_title(title)
    axes.set_xlabel("iteration")
    axes.grid(True, alpha=0.3)
    if keys:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "not in metrics.json", ha="center", transform=axes.transAxes)


def plot_training_curves(records: Records, path: Union[str, Path], title: str = "") -> None:
    """Four panels into ``path``: total loss; the loss terms of the last decoder layer
    (``loss_*`` without a layer number); learning rate; validation mIoU (every ``*/mIoU`` key,
    e.g. ``sem_seg/mIoU`` and ``sem_seg_TTA/mIoU``)."""
    keys = _keys(records)
    figure = Figure(figsize=(12, 8))
    figure.suptitle(title)
    grid = figure.subplots(2, 2, sharex=True)
    _plot_lines(grid[0, 0], records, [k for k in keys if k == "total_loss"], "total loss")
    _plot_lines(grid[0, 1], records, [k for k in keys if FINAL_LOSS.match(k)], "loss terms")
    _plot_lines(grid[1, 0], records, [k for k in keys if k == "lr"], "learning rate")
    miou = [k for k in keys if k.endswith(MIOU_SUFFIX)]
    _plot_lines(grid[1, 1], records, miou, "validation mIoU (%)", marker="o")
    for axes in grid[0]:
        axes.set_xlabel("")
    figure.tight_layout()
    save_figure(figure, path)


def write_training_curves(output_dir: Union[str, Path], path: Optional[Path] = None) -> Path:
    """Draw ``output_dir/metrics.json`` into ``path`` (default ``output_dir/training_curves.png``)
    and return the path. Raises ``FileNotFoundError`` naming the file if there is no metrics file
    and ``ValueError`` if it holds no record."""
    output_dir = Path(output_dir)
    metrics_file = output_dir / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"no {metrics_file}: not a training output folder?")
    records = read_metrics(metrics_file)
    if not records:
        raise ValueError(f"{metrics_file} holds no metrics record")
    path = path or output_dir / CURVES_FILE
    plot_training_curves(records, path, title=str(output_dir))
    return path


class TrainingCurvesHook(HookBase):
    """After training (finished or failed), on the main process, draw ``output_dir/metrics.json``
    into ``output_dir/training_curves.png``. Register it after detectron2's writers, so that the
    last metrics are in the file. A failure to draw is a warning: it never hides the training's
    own result or error."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def after_train(self) -> None:
        metrics_file = os.path.join(self.output_dir, "metrics.json")
        if not comm.is_main_process() or not os.path.isfile(metrics_file):
            return
        try:
            path = write_training_curves(self.output_dir)
        except (OSError, ValueError) as error:
            logger.warning(f"training curves not drawn: {error}")
            return
        logger.info(f"training curves in {path}")
