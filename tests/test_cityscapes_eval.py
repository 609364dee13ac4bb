"""Cityscapes evaluation end to end on a fabricated tree: official gtFine files from polygons,
trainIds by datasets/prepare_cityscapes.py, detectron2's own registration of
``cityscapes_fine_sem_seg_val``, ``Trainer.build_evaluator`` and ``inference_on_dataset``."""

import importlib.util
import json
import os
import types

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import name2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import json2labelImg
from conftest import REPO_ROOT, semask_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.data.datasets.builtin import _RAW_CITYSCAPES_SPLITS, register_all_cityscapes
from detectron2.evaluation import inference_on_dataset
from PIL import Image
from torch import nn

import semask.data  # noqa: F401  (registers the data sets)
from semask.data.builtin import add_missing_colours
from semask.engine import Trainer
from semask.evaluation import CityscapesSemSegEvaluator, numpy_with_in1d

VAL = "cityscapes_fine_sem_seg_val"
WIDTH, HEIGHT = 16, 12
# Per image: (city, polygons drawn in order; later ones on top); uncovered pixels are unlabelled.
IMAGES = {
    "frankfurt_000000_000294": [
        ("sky", [[0, 0], [15, 0], [15, 3], [0, 3]]),
        ("road", [[0, 8], [15, 8], [15, 11], [0, 11]]),
        ("car", [[4, 4], [9, 4], [9, 7], [4, 7]]),
    ],
    "lindau_000000_000019": [
        ("building", [[0, 0], [15, 0], [15, 5], [0, 5]]),
        ("sidewalk", [[0, 6], [15, 6], [15, 11], [0, 11]]),
        ("person", [[10, 3], [12, 3], [12, 9], [10, 9]]),
        ("ego vehicle", [[0, 11], [15, 11], [15, 11], [0, 11]]),
    ],
}
PRESENT = ("sky", "road", "car", "building", "sidewalk", "person")


def _fabricate(root):
    """leftImg8bit + gtFine (polygons, labelIds, instanceIds as in gtFine_trainvaltest.zip)."""
    for stem, objects in IMAGES.items():
        city = stem.split("_")[0]
        image_dir = root / "cityscapes" / "leftImg8bit" / "val" / city
        gt_dir = root / "cityscapes" / "gtFine" / "val" / city
        image_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"{stem}_leftImg8bit.png")
        polygons = {
            "imgHeight": HEIGHT,
            "imgWidth": WIDTH,
            "objects": [{"label": label, "polygon": polygon} for label, polygon in objects],
        }
        json_file = gt_dir / f"{stem}_gtFine_polygons.json"
        json_file.write_text(json.dumps(polygons))
        json2labelImg(str(json_file), str(gt_dir / f"{stem}_gtFine_labelIds.png"), "ids")
        # 16-bit like the distributed files (json2instanceImg's 32-bit PNG needs Pillow < 13).
        annotation = Annotation()
        annotation.fromJsonFile(str(json_file))
        instances = np.array(createInstanceImage(annotation, "ids"), dtype=np.uint16)
        Image.fromarray(instances).save(gt_dir / f"{stem}_gtFine_instanceIds.png")


def _prepare(root):
    spec = importlib.util.spec_from_file_location(
        "prepare_cityscapes", REPO_ROOT / "datasets" / "prepare_cityscapes.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.prepare_cityscapes(root) == len(IMAGES)


def _register_cityscapes(root):
    """detectron2's registration of every cityscapes_fine_* set, under ``root``."""
    for pattern in _RAW_CITYSCAPES_SPLITS:
        for task in ("instance_seg", "sem_seg"):
            name = pattern.format(task=task)
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    register_all_cityscapes(str(root))
    add_missing_colours([pattern.format(task="sem_seg") for pattern in _RAW_CITYSCAPES_SPLITS])


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("detectron2_datasets")
    _fabricate(root)
    _prepare(root)
    original = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    _register_cityscapes(root)
    yield root
    _register_cityscapes(original)


class LabelSegmenter(nn.Module):
    """Predicts the ground truth: one-hot scores [19, H, W] from each image's labelTrainIds file
    (ignored pixels scored as class 0), optionally with ``errors(stem, train_ids)`` applied."""

    def __init__(self, dataset, errors=None):
        super().__init__()
        self.labels = {d["file_name"]: d["sem_seg_file_name"] for d in dataset}
        self.errors = errors

    def forward(self, batched_inputs):
        outputs = []
        for item in batched_inputs:
            train_ids = np.array(Image.open(self.labels[item["file_name"]]), dtype=np.int64)
            train_ids[train_ids == 255] = 0
            if self.errors is not None:
                self.errors(os.path.basename(item["file_name"]), train_ids)
            scores = nn.functional.one_hot(torch.from_numpy(train_ids), 19).permute(2, 0, 1)
            outputs.append({"sem_seg": scores.float()})
        return outputs


def _evaluate(tmp_path, errors=None):
    cfg = semask_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.INPUT.MIN_SIZE_TEST = 0
    cfg.DATALOADER.NUM_WORKERS = 0
    evaluator = Trainer.build_evaluator(cfg, VAL)
    model = LabelSegmenter(DatasetCatalog.get(VAL), errors).eval()
    return inference_on_dataset(model, build_detection_test_loader(cfg, VAL), evaluator)


def _label_ids(root, stem):
    city = stem.split("_")[0]
    path = root / "cityscapes" / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
    return np.array(Image.open(path))


def test_perfect_prediction_scores_100(cityscapes_root, tmp_path):
    numpy_had_in1d = hasattr(np, "in1d")
    results = _evaluate(tmp_path)["sem_seg"]
    expected = {"IoU": 100.0, "iIoU": 100.0, "IoU_sup": 100.0, "iIoU_sup": 100.0}
    assert results == pytest.approx(expected)
    assert hasattr(np, "in1d") == numpy_had_in1d  # numpy itself is not patched
    assert not (cityscapes_root / "cityscapes" / "evaluationResults").exists()


def test_known_error_gives_the_hand_computed_iou(cityscapes_root, tmp_path):
    """Sky in the left half of the Frankfurt image predicted as road."""
    frankfurt = "frankfurt_000000_000294"

    def sky_as_road(image_name, train_ids):
        if image_name.startswith(frankfurt):
            left = train_ids[:, : WIDTH // 2]
            left[left == name2label["sky"].trainId] = name2label["road"].trainId

    results = _evaluate(tmp_path, sky_as_road)["sem_seg"]
    ids = _label_ids(cityscapes_root, frankfurt)
    lindau = _label_ids(cityscapes_root, "lindau_000000_000019")
    sky = np.count_nonzero(ids == name2label["sky"].id)
    wrong = np.count_nonzero(ids[:, : WIDTH // 2] == name2label["sky"].id)
    road = np.count_nonzero(ids == name2label["road"].id)
    sidewalk = np.count_nonzero(lindau == name2label["sidewalk"].id)
    assert (sky, wrong, road, sidewalk) == (64, 32, 64, 68)
    # road: tp 64, fp 32; sky: tp 32, fn 32; the other 4 present classes are exact.
    iou_road, iou_sky = road / (road + wrong), (sky - wrong) / sky
    assert results["IoU"] == pytest.approx(100 * (iou_road + iou_sky + 4) / len(PRESENT))
    # categories flat (road + sidewalk), sky, vehicle, construction, human.
    iou_flat = (road + sidewalk) / (road + sidewalk + wrong)
    assert results["IoU_sup"] == pytest.approx(100 * (iou_flat + iou_sky + 3) / 5)
    assert results["iIoU"] == pytest.approx(100.0)  # car and person are exact


def test_missing_label_ids_are_named(tmp_path):
    (tmp_path / "gtFine" / "val" / "aachen").mkdir(parents=True)
    name = "cityscapes_eval_missing_gt"
    MetadataCatalog.get(name).set(gt_dir=str(tmp_path / "gtFine" / "val"))
    evaluator = CityscapesSemSegEvaluator(name)
    evaluator.reset()
    with pytest.raises(FileNotFoundError, match=r"no \*_gtFine_labelIds.png under .*gtFine/val/"):
        evaluator.evaluate()


def test_numpy_with_in1d_is_scoped_to_one_module():
    module = types.ModuleType("scratch")
    module.np = np
    with numpy_with_in1d(module):
        flags = module.np.in1d(np.array([[1, 2], [3, 4]]), [2, 3], invert=True)
        assert module.np.uint8 is np.uint8
    np.testing.assert_array_equal(flags, [True, False, False, True])
    assert module.np is np
