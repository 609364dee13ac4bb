"""Figures of the evaluation report: the normalised confusion matrix (or, for many classes, the most
confused class pairs) and per-class IoU bars. Drawn with matplotlib's Agg canvas (no pyplot, no
global backend) and written atomically."""

from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from .io import atomic_path

# Up to this many classes the whole matrix is drawn; above it, the most confused pairs.
MATRIX_MAX_CLASSES = 150
# Up to this many classes every cell of the matrix shows its value.
ANNOTATE_MAX_CLASSES = 20
TOP_CONFUSIONS = 40
DPI = 100

Confusion = Tuple[int, int, float]


def save_figure(figure: Figure, path: Union[str, Path]) -> None:
    """Write ``figure`` to ``path`` (format from the suffix), atomically."""
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, bbox_inches="tight")


def _label_fontsize(count: int) -> float:
    """A tick-label size that keeps ``count`` labels apart on the sizes used here."""
    return float(np.clip(400 / max(count, 1), 6, 10))


def normalized_confusion(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion [K, K] (row: ground truth, column: prediction; each row sums to 1,
    rows of classes absent from the ground truth are 0) of a detectron2 ``SemSegEvaluator``
    matrix [K + 1, K + 1] (rows: prediction, columns: ground truth, last: ignored)."""
    matrix = confusion[:-1, :-1].T.astype(np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def top_confusions(normalized: np.ndarray, count: int = TOP_CONFUSIONS) -> List[Confusion]:
    """The ``count`` largest off-diagonal entries of ``normalized`` [K, K] as
    (ground-truth class, predicted class, fraction of that class' pixels), largest first;
    entries of 0 are left out."""
    off = normalized.copy()
    np.fill_diagonal(off, 0.0)
    order = np.argsort(-off, axis=None, kind="stable")[:count]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [(int(g), int(p), float(off[g, p])) for g, p in pairs if off[g, p] > 0]


def plot_confusion_matrix(
    normalized: np.ndarray, class_names: Sequence[str], path: Union[str, Path], title: str
) -> None:
    """The matrix ``normalized`` [K, K] (rows: ground truth, columns: prediction) as an image
    with every class named, sized so that names stay readable up to ``MATRIX_MAX_CLASSES``."""
    count = len(class_names)
    side = max(6.0, 0.16 * count + 3.0)
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.add_subplot()
    # A square-root colour scale: confusions of a few percent stay visible next to the diagonal.
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    shown = axes.imshow(normalized, cmap="Blues", norm=norm, interpolation="nearest")
    fontsize = _label_fontsize(count)
    ticks = np.arange(count)
    axes.set_xticks(ticks, labels=list(class_names), rotation=90, fontsize=fontsize)
    axes.set_yticks(ticks, labels=list(class_names), fontsize=fontsize)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("ground-truth class")
    axes.set_title(title)
    if count <= ANNOTATE_MAX_CLASSES:
        for (row, col), value in np.ndenumerate(normalized):
            color = "white" if value > 0.5 else "black"
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color=color)
    figure.colorbar(shown, ax=axes, fraction=0.04, label="fraction of the ground-truth pixels")
    save_figure(figure, path)


def plot_top_confusions(
    confusions: Sequence[Confusion],
    class_names: Sequence[str],
    path: Union[str, Path],
    title: str,
) -> None:
    """Horizontal bars of the most confused pairs ``confusions`` (from :func:`top_confusions`),
    labelled "ground truth -> prediction" and with their values, largest at the top."""
    labels = [f"{class_names[g]} -> {class_names[p]}" for g, p, _ in confusions]
    values = [fraction for _, _, fraction in confusions]
    figure = Figure(figsize=(9, max(3.0, 0.22 * len(labels) + 1.5)))
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    bars = axes.barh(positions, values, color="tab:red")
    axes.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    axes.set_yticks(positions, labels=labels, fontsize=_label_fontsize(len(labels)))
    axes.invert_yaxis()
    axes.set_xlim(0.0, min(1.0, 1.15 * max(values, default=1.0)))
    axes.set_xlabel("fraction of the ground-truth class' pixels predicted as the other class")
    axes.set_title(title)
    if not labels:
        axes.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=axes.transAxes)
    save_figure(figure, path)


def plot_class_iou(
    iou: Sequence[float],
    class_names: Sequence[str],
    miou: float,
    path: Union[str, Path],
    title: str,
) -> None:
    """Horizontal bars of per-class IoU in percent ``iou`` [K] (NaN: class absent from the ground
    truth, not drawn), best at the top, with the evaluator's mIoU ``miou`` as a dashed line."""
    iou = np.asarray(iou, dtype=np.float64)
    present = np.flatnonzero(~np.isnan(iou))
    order = present[np.argsort(-iou[present], kind="stable")]
    figure = Figure(figsize=(8, max(3.0, 0.16 * len(order) + 1.5)))
    axes = figure.add_subplot()
    positions = np.arange(len(order))
    axes.barh(positions, iou[order], color="tab:blue")
    axes.set_yticks(
        positions, labels=[class_names[i] for i in order], fontsize=_label_fontsize(len(order))
    )
    axes.invert_yaxis()
    axes.set_xlim(0.0, 100.0)
    axes.set_xlabel("IoU (%)")
    absent = len(iou) - len(order)
    axes.set_title(title + (f" ({absent} classes absent from the ground truth)" if absent else ""))
    if np.isfinite(miou):
        axes.axvline(miou, color="black", linestyle="--", linewidth=1, label=f"mIoU {miou:.2f}")
        axes.legend(loc="lower right")
    save_figure(figure, path)
