"""Preparation scripts in datasets/, run on tiny trees in each data set's official layout."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import scipy.io
from conftest import REPO_ROOT
from PIL import Image


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ade20k(tmp_path):
    prepare = _load("prepare_ade20k")
    base = tmp_path / "ADEChallengeData2016"
    labels = {
        "training": np.array([[0, 1, 2], [150, 75, 0]], np.uint8),
        "validation": np.array([[3, 0], [0, 1]], np.uint8),
    }
    for split, label in labels.items():
        (base / "annotations" / split).mkdir(parents=True)
        Image.fromarray(label).save(base / "annotations" / split / f"ADE_{split}_1.png")
    assert prepare.prepare_ade20k(tmp_path) == 2
    out = np.asarray(Image.open(base / "annotations_detectron2/training/ADE_training_1.png"))
    np.testing.assert_array_equal(out, [[255, 0, 1], [149, 74, 255]])
    out = np.asarray(Image.open(base / "annotations_detectron2/validation/ADE_validation_1.png"))
    np.testing.assert_array_equal(out, [[2, 255], [255, 0]])


def test_ade20k_rejects_bad_input(tmp_path):
    prepare = _load("prepare_ade20k")
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        prepare.prepare_ade20k(tmp_path)
    with pytest.raises(ValueError, match="0..150"):
        prepare.convert_ade20k_label(np.array([[151]], np.uint8))


def test_cityscapes(tmp_path):
    prepare = _load("prepare_cityscapes")
    city = tmp_path / "cityscapes" / "gtFine" / "train" / "aachen"
    city.mkdir(parents=True)
    polygons = {
        "imgHeight": 8,
        "imgWidth": 8,
        "objects": [
            {"label": "road", "polygon": [[0, 4], [7, 4], [7, 7], [0, 7]]},
            {"label": "sky", "polygon": [[0, 0], [7, 0], [7, 2], [0, 2]]},
            {"label": "ego vehicle", "polygon": [[6, 6], [7, 6], [7, 7], [6, 7]]},
        ],
    }
    stem = "aachen_000000_000019_gtFine"
    (city / f"{stem}_polygons.json").write_text(json.dumps(polygons))
    assert prepare.prepare_cityscapes(tmp_path) == 1
    out = np.asarray(Image.open(city / f"{stem}_labelTrainIds.png"))
    assert out.shape == (8, 8)
    assert out[5, 2] == 0  # road
    assert out[1, 3] == 10  # sky
    assert out[7, 7] == 255  # ego vehicle is ignored
    assert out[3, 3] == 255  # unlabelled


def test_cityscapes_rejects_missing_tree(tmp_path):
    prepare = _load("prepare_cityscapes")
    with pytest.raises(FileNotFoundError, match="gtFine"):
        prepare.prepare_cityscapes(tmp_path)


def test_coco_stuff_10k(tmp_path):
    prepare = _load("prepare_coco_stuff_10k")
    base = tmp_path / "coco" / "coco_stuff_10k"
    for folder in ("images", "annotations", "imageLists"):
        (base / folder).mkdir(parents=True)
    splits = {"train": ["COCO_train2014_000000000077"], "test": ["COCO_train2014_000000000078"]}
    label = np.array([[0, 1, 12], [91, 92, 182], [90, 183 - 1, 2]], np.uint16)
    for split, names in splits.items():
        (base / "imageLists" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            scipy.io.savemat(str(base / "annotations" / f"{name}.mat"), {"S": label})
            Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(base / "images" / f"{name}.jpg")
    assert prepare.prepare_coco_stuff_10k(tmp_path) == 2
    out = np.asarray(
        Image.open(base / "annotations_detectron2/train/COCO_train2014_000000000077.png")
    )
    # 0 unlabeled -> 255; 1 person -> 0; 12 (unused id) -> 255; 91 (unused) -> 255;
    # 92 banner -> 80; 182 wood -> 170; 90 toothbrush -> 79; 2 bicycle -> 1.
    np.testing.assert_array_equal(out, [[255, 0, 255], [255, 80, 170], [79, 170, 1]])
    assert (base / "images_detectron2/test/COCO_train2014_000000000078.jpg").is_file()
    assert (base / "annotations_detectron2/test/COCO_train2014_000000000078.png").is_file()


def test_coco_stuff_10k_rejects_bad_input(tmp_path):
    prepare = _load("prepare_coco_stuff_10k")
    with pytest.raises(FileNotFoundError, match="imageLists"):
        prepare.prepare_coco_stuff_10k(tmp_path)
    with pytest.raises(ValueError, match="0..182"):
        prepare.convert_coco_stuff_label(np.array([[183]]))


def test_command_line_uses_root_then_environment(tmp_path, monkeypatch):
    prepare = _load("prepare_ade20k")
    for root in ("arg", "env"):
        annotations = tmp_path / root / "ADEChallengeData2016" / "annotations" / "validation"
        annotations.mkdir(parents=True)
        Image.fromarray(np.ones((2, 2), np.uint8)).save(annotations / "a.png")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "env"))
    for argv, root in ((["--root", str(tmp_path / "arg")], "arg"), ([], "env")):
        monkeypatch.setattr(sys, "argv", ["prepare_ade20k.py", *argv])
        prepare.main()
        out = tmp_path / root / "ADEChallengeData2016/annotations_detectron2/validation/a.png"
        np.testing.assert_array_equal(np.asarray(Image.open(out)), [[0, 0], [0, 0]])
