"""The evaluation report (semask.report) through the trainer's evaluator: a fabricated data set and
a stand-in model predicting known labels."""

import csv
import json
import logging
import math

import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from torch import nn

from semask.engine import Trainer, launch
from semask.report import SemSegReportEvaluator, image_miou
from semask.report_figures import normalized_confusion, top_confusions

NAME = "report_test_sem_seg_val"
CLASSES = ["sky", "road", "car"]
H, W = 12, 16


def _ground_truth() -> np.ndarray:
    gt = np.zeros((H, W), dtype=np.uint8)
    gt[6:] = 1
    gt[8:, 4:10] = 2
    gt[0, :] = 255
    return gt


def _predictions(gt: np.ndarray):
    """stem -> predicted labels, from perfect to poor."""
    perfect = np.where(gt == 255, 0, gt)
    car_as_road = np.where(perfect == 2, 1, perfect)
    half_sky_as_road = perfect.copy()
    half_sky_as_road[:4, :] = 1
    all_road = np.ones_like(perfect)
    return {"a": perfect, "b": car_as_road, "c": half_sky_as_road, "d": all_road}


def _expected_miou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean IoU over the classes in the labelled ground truth or the prediction there."""
    labelled = gt != 255
    ious = []
    for c in range(len(CLASSES)):
        g, p = (gt == c) & labelled, (pred == c) & labelled
        if (g | p).any():
            ious.append((g & p).sum() / (g | p).sum())
    return 100 * float(np.mean(ious))


class KnownLabels(nn.Module):
    """Returns, for each input, one-hot scores [K, H, W] of the labels stored for its file."""

    def __init__(self, labels):
        super().__init__()
        self.labels = labels
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, batched_inputs):
        outputs = []
        for record in batched_inputs:
            labels = torch.as_tensor(self.labels[record["file_name"]]).long()
            scores = nn.functional.one_hot(labels, len(CLASSES)).permute(2, 0, 1).float()
            outputs.append({"sem_seg": scores})
        return outputs


def _register(folder, write=True):
    """Write (if ``write``) the four images and label maps to ``folder`` and register them as
    ``NAME``; (ground truth, image file -> predicted labels)."""
    gt = _ground_truth()
    rng = np.random.default_rng(0)
    records, labels = [], {}
    for stem, pred in _predictions(gt).items():
        image, label = folder / f"{stem}.jpg", folder / f"{stem}.png"
        pixels = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        if write:
            Image.fromarray(pixels).save(image)
            Image.fromarray(gt).save(label)
        records.append(
            {"file_name": str(image), "sem_seg_file_name": str(label), "height": H, "width": W}
        )
        labels[str(image)] = pred
    if NAME in DatasetCatalog.list():
        DatasetCatalog.remove(NAME)
        MetadataCatalog.remove(NAME)
    DatasetCatalog.register(NAME, lambda: records)
    MetadataCatalog.get(NAME).set(
        stuff_classes=CLASSES,
        stuff_colors=[[0, 0, 255], [128, 128, 128], [255, 0, 0]],
        ignore_label=255,
        evaluator_type="sem_seg",
    )
    return gt, labels


@pytest.fixture
def dataset(tmp_path):
    return _register(tmp_path)


def _cfg(tmp_path, num_worst=2):
    cfg = semask_cfg()
    cfg.DATASETS.TEST = (NAME,)
    cfg.DATASETS.TRAIN = (NAME,)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = len(CLASSES)
    cfg.INPUT.MIN_SIZE_TEST = 0
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.REPORT.NUM_WORST_IMAGES = num_worst
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    return cfg


def test_report_numbers_equal_the_evaluators(dataset, tmp_path, caplog):
    gt, labels = dataset
    with caplog.at_level(logging.INFO, logger="semask.report"):
        results = Trainer.test(_cfg(tmp_path), KnownLabels(labels))["sem_seg"]
    folder = tmp_path / "out" / "inference" / "report" / NAME
    assert {p.name for p in folder.iterdir()} == {
        "per_class.csv",
        "per_class.json",
        "per_image.csv",
        "confusion_matrix.png",
        "class_iou.png",
        "worst_images",
    }
    rows = list(csv.DictReader((folder / "per_class.csv").open()))
    assert [row["name"] for row in rows] == CLASSES
    report = json.loads((folder / "per_class.json").read_text())
    for row, entry in zip(rows, report["classes"]):
        assert float(row["IoU"]) == results[f"IoU-{row['name']}"] == entry["IoU"]
        assert float(row["ACC"]) == results[f"ACC-{row['name']}"] == entry["ACC"]
    for key in ("mIoU", "fwIoU", "mACC", "pACC"):
        assert report[key] == results[key]
    labelled = gt != 255
    assert [int(row["gt_pixels"]) for row in rows] == [
        4 * int(((gt == c) & labelled).sum()) for c in range(3)
    ]
    # car -> road in images b and d (48 of 96 pixels); sky -> road in c and d (128 of 320)
    assert report["top_confusions"][0] == {
        "ground_truth": "car",
        "predicted": "road",
        "fraction": 0.5,
    }
    line = next(r.getMessage() for r in caplog.records if "best classes" in r.getMessage())
    assert line.startswith(f"{NAME}: mIoU {results['mIoU']:.2f}; best classes: road ")
    assert "worst classes: car " in line and str(folder) in line
    for png in ("confusion_matrix.png", "class_iou.png"):
        assert Image.open(folder / png).size[0] > 300


def test_lowest_miou_images_are_drawn_in_order(dataset, tmp_path):
    gt, labels = dataset
    Trainer.test(_cfg(tmp_path, num_worst=2), KnownLabels(labels))
    folder = tmp_path / "out" / "inference" / "report" / NAME
    expected = sorted((_expected_miou(gt, pred), name) for name, pred in labels.items())
    scores = list(csv.DictReader((folder / "per_image.csv").open()))
    assert [row["file_name"] for row in scores] == [name for _, name in expected]
    assert [float(row["mIoU"]) for row in scores] == pytest.approx([s for s, _ in expected])
    drawn = sorted(p.name for p in (folder / "worst_images").iterdir())
    stems = [name.rsplit("/", 1)[-1][:-4] for _, name in expected[:2]]
    assert [d.split("_")[-1] for d in drawn] == [f"{stem}.png" for stem in stems]
    assert drawn[0].startswith(f"01_miou{expected[0][0]:05.1f}_")
    picture = np.asarray(Image.open(folder / "worst_images" / drawn[0]))
    # image | ground truth | prediction, enlarged to a shorter side of 256, over a legend
    assert picture.shape[1] == 3 * W * 22 and picture.shape[0] > H * 22


def _evaluate_one_rank(data, output):
    _, labels = _register(data, write=False)
    Trainer.test(_cfg(output), KnownLabels(labels))


@pytest.mark.slow
def test_two_process_evaluation_writes_the_single_process_report(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _register(data)
    launch(_evaluate_one_rank, 2, dist_url="auto", args=(data, tmp_path / "two"))
    _evaluate_one_rank(data, tmp_path / "one")
    one, two = (tmp_path / run / "out" / "inference" / "report" / NAME for run in ("one", "two"))
    assert (two / "per_class.json").read_text() == (one / "per_class.json").read_text()
    assert (two / "per_image.csv").read_text() == (one / "per_image.csv").read_text()
    drawn = sorted(p.name for p in (one / "worst_images").iterdir())
    assert len(drawn) == 2 and sorted(p.name for p in (two / "worst_images").iterdir()) == drawn


def test_image_miou_follows_the_evaluators_rule():
    # rows: prediction, columns: ground truth; the last row/column is "ignored"
    confusion = np.array([[3, 1, 0, 5], [0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
    # class 0: tp 3, union 3+2+1 = 6; class 1: tp 2, union 3; class 2: only predicted -> 0
    assert image_miou(confusion) == pytest.approx(100 * (3 / 6 + 2 / 3 + 0) / 3)
    assert math.isnan(image_miou(np.zeros((4, 4), dtype=np.int64)))


def test_top_confusions_are_fractions_of_the_ground_truth():
    confusion = np.array([[6, 1, 0], [4, 3, 0], [0, 0, 0]])  # gt 0: 6 right, 4 as class 1
    normalized = normalized_confusion(confusion)
    assert normalized.tolist() == [[0.6, 0.4], [0.25, 0.75]]
    assert top_confusions(normalized) == [(0, 1, 0.4), (1, 0, 0.25)]


def test_many_classes_draw_the_most_confused_pairs(tmp_path):
    classes = [f"c{i}" for i in range(160)]
    name = "report_test_many_classes"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(stuff_classes=classes, ignore_label=255)
    evaluator = SemSegReportEvaluator(name, distributed=False, report_dir=str(tmp_path))
    evaluator.reset()
    evaluator._conf_matrix[:160, :160] = np.eye(160, dtype=np.int64) * 10
    evaluator._conf_matrix[5, 7] = 30  # 3 of 4 pixels of c7 predicted as c5
    evaluator.evaluate()
    report = json.loads((tmp_path / "per_class.json").read_text())
    assert report["top_confusions"] == [{"ground_truth": "c7", "predicted": "c5", "fraction": 0.75}]
    assert Image.open(tmp_path / "confusion_matrix.png").size[1] < 1000  # bars, not a matrix


def test_negative_worst_image_count_names_the_key():
    with pytest.raises(ValueError, match="TEST.REPORT.NUM_WORST_IMAGES"):
        SemSegReportEvaluator(NAME, distributed=False, num_worst_images=-1)
