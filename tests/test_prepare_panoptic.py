"""The panoptic and instance preparation scripts of datasets/, run on tiny trees in the official
layouts: COCO panoptic -> semantic PNGs, ADE20K -> panoptic PNGs + JSON and instance JSON."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
from conftest import REPO_ROOT
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from PIL import Image

from semask.data import DataError
from semask.data.ade20k_categories import (
    ADE20K_THING_IDS,
    ade20k_instance_categories,
    ade20k_panoptic_categories,
)
from semask.data.panoptic_datasets import ade20k_instance_metadata, register_panoptic
from semask.data.panoptic_labels import id_to_rgb, rgb_to_id, semantic_from_segments


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]


# ---------------------------------------------------------------- COCO panoptic -> semantic

STUFF = [c["id"] for c in COCO_CATEGORIES if not c["isthing"]]
PERSON, CAR, FIRST_STUFF, LAST_STUFF = 1, 3, STUFF[0], STUFF[-1]
SORTED_IDS = sorted(c["id"] for c in COCO_CATEGORIES)


def write_coco(root):
    """coco/annotations/panoptic_{train,val}2017.json and their PNGs: two persons, a crowd of
    cars, two stuff classes, void (0) and a segment id that the JSON does not list (77)."""
    ids = np.array([[1001, 1001, 5, 5, 0], [1002, 2001, 2001, 9, 77], [1002, 0, 5, 9, 9]])
    listed = {
        1001: (PERSON, 0),
        1002: (PERSON, 0),
        2001: (CAR, 1),
        5: (FIRST_STUFF, 0),
        9: (LAST_STUFF, 0),
    }
    coco = root / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split, image_id in (("train", 139), ("val", 285)):
        (coco / f"panoptic_{split}2017").mkdir()
        stem = f"{image_id:012d}"
        Image.fromarray(id_to_rgb(ids)).save(coco / f"panoptic_{split}2017" / f"{stem}.png")
        segments = [
            {
                "id": i,
                "category_id": c,
                "iscrowd": crowd,
                "area": int((ids == i).sum()),
                "bbox": _bbox(ids == i),
            }
            for i, (c, crowd) in listed.items()
        ]
        content = {
            "images": [{"id": image_id, "file_name": f"{stem}.jpg", "height": 3, "width": 5}],
            "annotations": [
                {"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments}
            ],
            "categories": COCO_CATEGORIES,
        }
        (coco / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(content))
    expected = np.full(ids.shape, 255)
    for segment_id, (category, _) in listed.items():
        expected[ids == segment_id] = SORTED_IDS.index(category)
    return coco, expected


def test_coco_semantic_from_panoptic(tmp_path):
    prepare = _load("prepare_coco_semantic_annos_from_panoptic")
    coco, expected = write_coco(tmp_path)
    assert prepare.prepare_coco_panoptic_semantic(tmp_path) == 2
    for split, image_id in (("train", 139), ("val", 285)):
        out = coco / f"panoptic_semseg_{split}2017" / f"{image_id:012d}.png"
        semantic = np.asarray(Image.open(out))
        assert semantic.dtype == np.uint8 and Image.open(out).mode == "L"
        np.testing.assert_array_equal(semantic, expected)
    # person is contiguous 0 and the crowd of cars keeps class 2 (car's place among the ids);
    # void and the unlisted id 77 are 255; the last stuff class is 132.
    assert semantic[0, 0] == 0 and semantic[1, 1] == SORTED_IDS.index(CAR) == 2
    assert semantic[1, 4] == semantic[2, 1] == 255 and semantic[2, 4] == 132


def test_coco_semantic_rejects_missing_tree(tmp_path):
    prepare = _load("prepare_coco_semantic_annos_from_panoptic")
    with pytest.raises(FileNotFoundError, match="panoptic_annotations_trainval2017.zip"):
        prepare.prepare_coco_panoptic_semantic(tmp_path)
    coco, _ = write_coco(tmp_path)
    (coco / "panoptic_val2017" / "000000000285.png").unlink()
    with pytest.raises(DataError, match="000000000285.png"):
        prepare.prepare_coco_panoptic_semantic(tmp_path)


@pytest.mark.slow
def test_coco_semantic_command_line_in_workers(tmp_path):
    coco, expected = write_coco(tmp_path)
    script = REPO_ROOT / "datasets" / "prepare_coco_semantic_annos_from_panoptic.py"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "projects" / "SeMask")}
    command = [sys.executable, str(script), "--root", str(tmp_path), "--workers", "2"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    for split, image_id in (("train", 139), ("val", 285)):
        out = coco / f"panoptic_semseg_{split}2017" / f"{image_id:012d}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


# ---------------------------------------------------------------- ADE20K panoptic / instance

PERSON_ID, TABLE_ID = 12, 15  # dataset ids (0-based) of two thing classes
# Stored semantic values (1-based): 1 wall, 3 sky, 4 floor (stuff); 13 person, 20 chair (things).
SEMANTIC = np.array(
    [[1, 1, 1, 4, 4, 4], [1, 13, 13, 4, 0, 4], [20, 13, 13, 4, 4, 4], [3, 3, 13, 13, 4, 4]],
    np.uint8,
)
# (instance class 1..100, mask): two persons, the second over the floor; a table over all the sky.
INSTANCES = {
    1: (PERSON_ID, [(1, 1), (1, 2), (2, 1), (2, 2)]),
    2: (PERSON_ID, [(3, 3), (3, 4)]),
    5: (TABLE_ID, [(3, 0), (3, 1)]),
}


def _instance_png(instances, shape):
    encoded = np.zeros((*shape, 3), np.uint8)
    for instance_id, (category, pixels) in instances.items():
        for y, x in pixels:
            encoded[y, x] = (ADE20K_THING_IDS.index(category) + 1, instance_id, 0)
    return encoded


def write_ade20k(root):
    """ADEChallengeData2016 with a training image (instances, stuff, void, covered stuff) and a
    validation image without instances."""
    base = root / "ADEChallengeData2016"
    samples = {
        "training": ("ADE_train_00000001", SEMANTIC, _instance_png(INSTANCES, SEMANTIC.shape)),
        "validation": ("ADE_val_00000001", np.array([[1, 0, 4]], np.uint8), np.zeros((1, 3, 3))),
    }
    for folder, (stem, semantic, instances) in samples.items():
        for sub in ("images", "annotations", "annotations_instance"):
            (base / sub / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((*semantic.shape, 3), np.uint8)).save(
            base / "images" / folder / f"{stem}.jpg"
        )
        Image.fromarray(semantic).save(base / "annotations" / folder / f"{stem}.png")
        Image.fromarray(instances.astype(np.uint8)).save(
            base / "annotations_instance" / folder / f"{stem}.png"
        )
    return base


def _expected_categories():
    """Dataset id per pixel of the training image, -1 void: stuff of the semantic map, then the
    instances over it."""
    things = set(ADE20K_THING_IDS)
    stored = SEMANTIC.astype(int) - 1
    expected = np.where((stored >= 0) & ~np.isin(stored, list(things)), stored, -1)
    for category, pixels in INSTANCES.values():
        for y, x in pixels:
            expected[y, x] = category
    return expected


def test_ade20k_panoptic(tmp_path):
    prepare = _load("prepare_ade20k_pan_seg")
    base = write_ade20k(tmp_path)
    assert prepare.prepare_ade20k_panoptic(tmp_path) == 2
    content = json.loads((base / "ade20k_panoptic_train.json").read_text())
    assert content["categories"] == ade20k_panoptic_categories()
    assert content["images"] == [
        {"id": "ADE_train_00000001", "file_name": "ADE_train_00000001.jpg", "height": 4, "width": 6}
    ]
    (annotation,) = content["annotations"]
    assert annotation["image_id"] == "ADE_train_00000001"
    assert annotation["file_name"] == "ADE_train_00000001.png"
    ids = rgb_to_id(
        np.asarray(Image.open(base / "ade20k_panoptic_train" / annotation["file_name"]))
    )
    segments = annotation["segments_info"]
    categories = np.full(ids.shape, -1)
    for segment in segments:
        mask = ids == segment["id"]
        assert segment["area"] == mask.sum() > 0
        assert segment["bbox"] == _bbox(mask)
        assert segment["iscrowd"] == 0
        categories[mask] = segment["category_id"]
    np.testing.assert_array_equal(categories, _expected_categories())
    assert set(np.unique(ids)) == {0} | {s["id"] for s in segments}
    # One segment per stuff class left and per instance; the sky (2) is covered, so left out.
    assert sorted(s["category_id"] for s in segments) == [0, 3, PERSON_ID, PERSON_ID, TABLE_ID]
    (val,) = json.loads((base / "ade20k_panoptic_val.json").read_text())["annotations"]
    assert [(s["category_id"], s["area"], s["bbox"]) for s in val["segments_info"]] == [
        (0, 1, [0, 0, 1, 1]),
        (3, 1, [2, 0, 1, 1]),
    ]


def test_ade20k_panoptic_loads_as_registered(tmp_path):
    base = write_ade20k(tmp_path)
    _load("prepare_ade20k_pan_seg").prepare_ade20k_panoptic(tmp_path)
    name = "test_ade20k_panoptic_prepared"
    register_panoptic(
        name,
        image_root=str(base / "images" / "training"),
        panoptic_root=str(base / "ade20k_panoptic_train"),
        panoptic_json=str(base / "ade20k_panoptic_train.json"),
        sem_seg_root=None,
        categories=ade20k_panoptic_categories(),
        evaluator_type="ade20k_panoptic_seg",
    )
    try:
        (record,) = DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert record["image_id"] == "ADE_train_00000001" and (record["height"], record["width"]) == (
        4,
        6,
    )
    ids = rgb_to_id(np.asarray(Image.open(record["pan_seg_file_name"])))
    semantic = semantic_from_segments(ids, record["segments_info"])
    expected = _expected_categories()
    np.testing.assert_array_equal(semantic, np.where(expected >= 0, expected, 255))
    things = [s for s in record["segments_info"] if s["isthing"]]
    assert sorted(s["category_id"] for s in things) == [PERSON_ID, PERSON_ID, TABLE_ID]


def test_ade20k_instances(tmp_path):
    prepare = _load("prepare_ade20k_ins_seg")
    base = write_ade20k(tmp_path)
    assert prepare.prepare_ade20k_instances(tmp_path) == 2
    json_file = base / "ade20k_instance_train.json"
    content = json.loads(json_file.read_text())
    assert content["categories"] == ade20k_instance_categories()
    assert [image["id"] for image in content["images"]] == ["ADE_train_00000001"]
    annotations = content["annotations"]
    assert [a["id"] for a in annotations] == [1, 2, 3]
    for annotation, (category, pixels) in zip(annotations, INSTANCES.values()):
        mask = np.zeros(SEMANTIC.shape, bool)
        mask[tuple(np.array(pixels).T)] = True
        np.testing.assert_array_equal(mask_util.decode(annotation["segmentation"]), mask)
        assert annotation["category_id"] == category
        assert annotation["area"] == len(pixels) and annotation["bbox"] == _bbox(mask)
        assert annotation["iscrowd"] == 0 and annotation["image_id"] == "ADE_train_00000001"
    assert json.loads((base / "ade20k_instance_val.json").read_text())["annotations"] == []
    name = "test_ade20k_instance_prepared"
    register_coco_instances(
        name, ade20k_instance_metadata(), str(json_file), str(base / "images" / "training")
    )
    try:
        (record,) = DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    classes = [a["category_id"] for a in record["annotations"]]
    assert classes == [ADE20K_THING_IDS.index(c) for c, _ in INSTANCES.values()]


@pytest.mark.parametrize(
    "pixel, message",
    [
        ((6, 1, 0), r"instance 1 has instance class\(es\) \[4, 6\]"),  # a table in a person
        ((0, 1, 0), r"instance 1 has instance class\(es\) \[0, 4\]"),  # no class
        ((101, 2, 0), r"instance 2 has instance class\(es\) \[101\]"),  # not a class
    ],
)
def test_ade20k_rejects_bad_instances(tmp_path, pixel, message):
    base = write_ade20k(tmp_path)
    path = base / "annotations_instance" / "training" / "ADE_train_00000001.png"
    encoded = _instance_png({1: (PERSON_ID, [(0, 0)])}, SEMANTIC.shape)
    encoded[0, 1] = pixel
    Image.fromarray(encoded).save(path)
    for script, function in (
        ("prepare_ade20k_pan_seg", "prepare_ade20k_panoptic"),
        ("prepare_ade20k_ins_seg", "prepare_ade20k_instances"),
    ):
        with pytest.raises(DataError, match=message) as error:
            getattr(_load(script), function)(tmp_path)
        assert str(error.value).startswith(str(path))


def test_ade20k_rejects_bad_trees(tmp_path):
    pan_seg = _load("prepare_ade20k_pan_seg")
    with pytest.raises(FileNotFoundError, match="annotations_instance.tar"):
        pan_seg.prepare_ade20k_panoptic(tmp_path)
    base = write_ade20k(tmp_path)
    semantic = base / "annotations" / "training" / "ADE_train_00000001.png"
    Image.fromarray(SEMANTIC[:3]).save(semantic)
    with pytest.raises(DataError, match=r"of shape \(3, 6\); expected uint8 of the image's size"):
        pan_seg.prepare_ade20k_panoptic(tmp_path)
    instance = base / "annotations_instance" / "validation" / "ADE_val_00000001.png"
    instance.unlink()
    with pytest.raises(DataError, match=f"{instance}: instance annotation not found"):
        _load("prepare_ade20k_ins_seg").prepare_ade20k_instances(tmp_path)
