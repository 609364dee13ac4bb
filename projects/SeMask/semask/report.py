"""The evaluation report: detectron2's ``SemSegEvaluator`` that also writes, on the main process,

* ``per_class.csv`` / ``per_class.json``: IoU and accuracy of every class (the evaluator's own
  numbers), pixel counts, the summary metrics and the most confused class pairs;
* ``per_image.csv``: the mIoU of every image, lowest first;
* ``confusion_matrix.png`` (normalised; the most confused pairs above ``MATRIX_MAX_CLASSES``
  classes) and ``class_iou.png``;
* ``worst_images/``: image | ground truth | prediction of the images of lowest mIoU,

and logs a line that names the best and worst classes.
"""

import csv
import itertools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.utils import comm

from .data.image_io import read_image
from .data.metadata import resolve_metadata
from .evaluation import SemSegEvaluator
from .io import atomic_path
from .report_figures import (
    MATRIX_MAX_CLASSES,
    normalized_confusion,
    plot_class_iou,
    plot_confusion_matrix,
    plot_top_confusions,
    top_confusions,
)
from .visualization import draw_labelled
from .writers import save_image

logger = logging.getLogger(__name__)

# Classes named as best and as worst in the summary line.
SUMMARY_CLASSES = 3
SUMMARY_METRICS = ("mIoU", "fwIoU", "mACC", "pACC")
# (mIoU, image file, predicted labels [H, W]) of one image.
ScoredImage = Tuple[float, str, np.ndarray]


def image_miou(confusion: np.ndarray) -> float:
    """mIoU in percent of one confusion matrix [K + 1, K + 1] (detectron2's layout: rows are
    predictions, columns ground truth, the last of each is "ignored"), by ``SemSegEvaluator``'s
    rule: the mean over classes that are in the ground truth or the prediction (pixels of ignored
    ground truth not counted); NaN if there are none."""
    matrix = confusion[:-1, :-1].astype(np.float64)
    tp = matrix.diagonal()
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    valid = union > 0
    return float(100 * (tp[valid] / union[valid]).mean()) if valid.any() else math.nan


def _number(value: float) -> Optional[float]:
    """``value`` as a float, or None for NaN (JSON has no NaN)."""
    return None if math.isnan(value) else float(value)


class SemSegReportEvaluator(SemSegEvaluator):
    """:class:`semask.evaluation.SemSegEvaluator` (same metrics, same results, ground truth read
    through the data set's label mapping) that writes the evaluation report into
    ``report_dir`` (default ``output_dir/report/<dataset_name>``; no files without either) and
    keeps the ``num_worst_images`` images of lowest mIoU to draw there.

    Per-image confusion matrices are taken from the evaluator's own accumulation, so per-image and
    per-class numbers are computed from exactly the pixels the evaluator counted. In distributed
    evaluation every process keeps its own lowest images; the main process gathers them.
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        num_worst_images: int = 8,
        report_dir: Optional[str] = None,
    ) -> None:
        if num_worst_images < 0:
            raise ValueError(
                "num_worst_images (TEST.REPORT.NUM_WORST_IMAGES) must be >= 0, "
                f"got {num_worst_images}"
            )
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)
        self._num_worst = num_worst_images
        if report_dir is None and output_dir:
            report_dir = os.path.join(output_dir, "report", dataset_name)
        self._report_dir = report_dir

    def reset(self) -> None:
        super().reset()
        self._image_scores: List[Tuple[str, float]] = []
        self._worst: List[ScoredImage] = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for input, output in zip(inputs, outputs):
            before = self._conf_matrix.copy()
            super().process([input], [output])
            score = image_miou(self._conf_matrix - before)
            self._image_scores.append((input["file_name"], score))
            self._keep_if_worst(score, input["file_name"], output["sem_seg"])

    def _keep_if_worst(self, score: float, file_name: str, sem_seg: torch.Tensor) -> None:
        """Keep the prediction of ``file_name`` if it is among the lowest ``num_worst_images``."""
        if self._num_worst == 0 or math.isnan(score):
            return
        if len(self._worst) == self._num_worst and (score, file_name) >= self._worst[-1][:2]:
            return
        dtype = np.uint8 if self._num_classes <= 255 else np.int32
        labels = sem_seg.argmax(dim=0).cpu().numpy().astype(dtype)
        self._worst.append((score, file_name, labels))
        self._worst.sort(key=lambda item: item[:2])
        del self._worst[self._num_worst :]

    def evaluate(self) -> Optional[Dict[str, Any]]:
        scores, worst = self._image_scores, self._worst
        if self._distributed:
            scores = list(itertools.chain(*comm.gather(scores)))
            worst = list(itertools.chain(*comm.gather(worst)))
        results = super().evaluate()
        if results is None:
            return None
        worst = sorted(worst, key=lambda item: item[:2])[: self._num_worst]
        rows = class_rows(results["sem_seg"], self._conf_matrix, self._class_names)
        if self._report_dir:
            self._write(results["sem_seg"], rows, sorted(scores, key=_score_order), worst)
        logger.info(summary_line(self._dataset_name, results["sem_seg"], rows, self._report_dir))
        return results

    def _write(
        self,
        metrics: Dict[str, float],
        rows: List[Dict[str, Any]],
        scores: List[Tuple[str, float]],
        worst: List[ScoredImage],
    ) -> None:
        folder = Path(self._report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        normalized = normalized_confusion(self._conf_matrix)
        confusions = top_confusions(normalized)
        write_class_tables(folder, metrics, rows, confusions, self._class_names)
        write_image_scores(folder / "per_image.csv", scores)
        names, title = self._class_names, f"{self._dataset_name}: mIoU {metrics['mIoU']:.2f}"
        if len(names) <= MATRIX_MAX_CLASSES:
            plot_confusion_matrix(normalized, names, folder / "confusion_matrix.png", title)
        else:
            pairs = f"{title}, the {len(confusions)} most confused class pairs"
            plot_top_confusions(confusions, names, folder / "confusion_matrix.png", pairs)
        iou = [math.nan if row["IoU"] is None else row["IoU"] for row in rows]
        plot_class_iou(iou, names, metrics["mIoU"], folder / "class_iou.png", title)
        self._draw_worst(folder / "worst_images", worst)

    def _draw_worst(self, folder: Path, worst: List[ScoredImage]) -> None:
        """image | ground truth | prediction of each of ``worst``, named by rank, mIoU and stem."""
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.png"):
            stale.unlink()
        metadata = resolve_metadata(self._dataset_name, self._num_classes)
        for rank, (score, file_name, labels) in enumerate(worst, start=1):
            truth = self.ground_truth(file_name)
            image = read_image(file_name, format="RGB")
            name = f"{rank:02d}_miou{score:05.1f}_{Path(file_name).stem}.png"
            save_image(folder / name, draw_labelled(image, [truth, labels], metadata))


def _score_order(item: Tuple[str, float]) -> Tuple[bool, float, str]:
    """Lowest mIoU first, NaN (no labelled pixels) last, then by file name."""
    file_name, score = item
    return (math.isnan(score), score, file_name)


def class_rows(
    metrics: Dict[str, float], confusion: np.ndarray, class_names: Sequence[str]
) -> List[Dict[str, Any]]:
    """One row per class: id, name, the evaluator's ``IoU-<name>`` and ``ACC-<name>`` (percent;
    None where NaN) and the pixel counts of ground truth and prediction from ``confusion``."""
    matrix = confusion[:-1, :-1]
    gt_pixels, predicted_pixels = matrix.sum(axis=0), matrix.sum(axis=1)
    return [
        {
            "id": index,
            "name": name,
            "IoU": _number(metrics[f"IoU-{name}"]),
            "ACC": _number(metrics[f"ACC-{name}"]),
            "gt_pixels": int(gt_pixels[index]),
            "predicted_pixels": int(predicted_pixels[index]),
        }
        for index, name in enumerate(class_names)
    ]


def write_class_tables(
    folder: Path,
    metrics: Dict[str, float],
    rows: List[Dict[str, Any]],
    confusions: Sequence[Tuple[int, int, float]],
    class_names: Sequence[str],
) -> None:
    """``per_class.csv`` (one line per class; NaN left empty) and ``per_class.json`` (summary
    metrics, classes, most confused pairs) in ``folder``."""
    with atomic_path(folder / "per_class.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
    report = {
        **{key: _number(metrics[key]) for key in SUMMARY_METRICS},
        "classes": rows,
        "top_confusions": [
            {"ground_truth": class_names[g], "predicted": class_names[p], "fraction": fraction}
            for g, p, fraction in confusions
        ],
    }
    with atomic_path(folder / "per_class.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))


def write_image_scores(path: Path, scores: Sequence[Tuple[str, float]]) -> None:
    """A CSV of ``file_name,mIoU`` lines (NaN left empty) in the given order."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file_name", "mIoU"])
        writer.writerows((name, "" if math.isnan(score) else score) for name, score in scores)


def summary_line(
    dataset_name: str,
    metrics: Dict[str, float],
    rows: Sequence[Dict[str, Any]],
    report_dir: Optional[str],
) -> str:
    """ "<data set>: mIoU m; best classes a 97.1, ...; worst classes z 3.2, ..." over the classes
    present in the ground truth, with where the report is."""
    scored = sorted((row for row in rows if row["IoU"] is not None), key=lambda r: -r["IoU"])
    count = min(SUMMARY_CLASSES, -(-len(scored) // 2))
    best = ", ".join(f"{row['name']} {row['IoU']:.1f}" for row in scored[:count])
    worst = ", ".join(f"{row['name']} {row['IoU']:.1f}" for row in scored[::-1][:count])
    where = f"; report in {report_dir}" if report_dir else ""
    return (
        f"{dataset_name}: mIoU {metrics['mIoU']:.2f}; best classes: {best or '-'}; "
        f"worst classes: {worst or '-'}{where}"
    )
