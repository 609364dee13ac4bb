"""The panoptic quick-start: its generator (COCO panoptic layout, JSON, PNGs and semantic maps
that agree pixel by pixel, instances), its registration and config, and the --task option of
tools/quickstart.py."""

import dataclasses
import hashlib
import json
import os
import sys
from functools import partial

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.events import EventStorage
from test_train_e2e import tiny_model_opts

from semask.data.panoptic_labels import rgb_to_id
from semask.data.quickstart import QUICKSTART_COLORS
from semask.data.quickstart_panoptic import (
    PANOPTIC_CATEGORIES,
    PANOPTIC_CLASSES,
    PANOPTIC_THINGS,
    QUICKSTART_PANOPTIC,
    SHAPES_PER_IMAGE,
    generate_panoptic,
    is_panoptic_generated,
    make_panoptic_sample,
    register_quickstart_panoptic,
    split_layout,
)
from semask.engine import build_cfg
from semask.engine.validation import validate_config

sys.path.insert(0, str(REPO_ROOT / "tools"))
import quickstart as quickstart_tool  # noqa: E402

PANOPTIC_CONFIG = (
    REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart_panoptic.yaml"
)
SPLITS = ("training", "validation")
NAMES = [f"{QUICKSTART_PANOPTIC}_{split}" for split in ("train", "val")]
NUM_STUFF = len(PANOPTIC_CLASSES) - len(PANOPTIC_THINGS)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root holding a small panoptic quick-start set (12 + 4 images of 64 x 64)."""
    data_root = tmp_path_factory.mktemp("data_root")
    generate_panoptic(data_root / QUICKSTART_PANOPTIC, num_train=12, num_val=4, size=64, seed=0)
    return data_root


@pytest.fixture(scope="module")
def root(data_root):
    return data_root / QUICKSTART_PANOPTIC


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p.relative_to(root)), hashlib.md5(p.read_bytes()).hexdigest()) for p in files]


def _read_rgb(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]


def _labels(root, split):
    """Per annotation of the split's JSON: (annotation, segment ids [H, W], semantic [H, W])."""
    layout = split_layout(root, split)
    content = json.loads(layout.panoptic_json.read_text())
    for annotation in content["annotations"]:
        segment_ids = rgb_to_id(_read_rgb(layout.panoptic_dir / annotation["file_name"]))
        semantic = cv2.imread(
            str(layout.semantic_dir / annotation["file_name"]), cv2.IMREAD_UNCHANGED
        )
        yield annotation, segment_ids, semantic


def test_categories_put_things_first_with_dataset_ids_from_one():
    assert [c["id"] for c in PANOPTIC_CATEGORIES] == list(range(1, 8))
    assert [c["name"] for c in PANOPTIC_CATEGORIES] == list(PANOPTIC_CLASSES)
    assert [c["isthing"] for c in PANOPTIC_CATEGORIES] == [1, 1, 1, 0, 0, 0, 0]
    assert {c["name"] for c in PANOPTIC_CATEGORIES if c["isthing"]} == {"disc", "box", "triangle"}
    assert all(tuple(c["color"]) in QUICKSTART_COLORS for c in PANOPTIC_CATEGORIES)


def test_writes_the_coco_panoptic_layout(root):
    for split, count in zip(SPLITS, (12, 4)):
        layout = split_layout(root, split)
        content = json.loads(layout.panoptic_json.read_text())
        assert set(content) == {"images", "annotations", "categories"}
        assert content["categories"] == [dict(c) for c in PANOPTIC_CATEGORIES]
        images = {image["id"]: image for image in content["images"]}
        assert len(images) == len(content["annotations"]) == count
        for annotation in content["annotations"]:
            image = images[annotation["image_id"]]
            stem = image["file_name"][: -len(".jpg")]
            assert annotation["file_name"] == f"{stem}.png"
            assert (image["height"], image["width"]) == (64, 64)
            picture = cv2.imread(str(layout.image_dir / image["file_name"]))
            assert picture.shape == (64, 64, 3)
            for folder in (layout.panoptic_dir, layout.semantic_dir):
                assert (folder / annotation["file_name"]).is_file()
    assert is_panoptic_generated(root, num_train=12, num_val=4)
    assert not is_panoptic_generated(root, num_train=13, num_val=4)
    (split_layout(root, "validation").panoptic_json).rename(root / "moved.json")
    try:
        assert not is_panoptic_generated(root, num_train=12, num_val=4)
    finally:
        (root / "moved.json").rename(split_layout(root, "validation").panoptic_json)


def test_segments_info_matches_the_png_pixel_by_pixel(root):
    dataset_ids = {c["id"] for c in PANOPTIC_CATEGORIES}
    for split in SPLITS:
        for annotation, segment_ids, _ in _labels(root, split):
            segments = annotation["segments_info"]
            ids = [s["id"] for s in segments]
            assert len(set(ids)) == len(ids), annotation["file_name"]
            # Every pixel belongs to a listed segment: no void, no unlisted id.
            assert set(np.unique(segment_ids).tolist()) == set(ids)
            for segment in segments:
                mask = segment_ids == segment["id"]
                ys, xs = np.nonzero(mask)
                assert segment["area"] == mask.sum()
                box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert segment["bbox"] == box
                assert segment["iscrowd"] == 0 and segment["category_id"] in dataset_ids
            assert sum(s["area"] for s in segments) == segment_ids.size


def test_semantic_maps_give_each_segment_its_contiguous_category(root):
    for split in SPLITS:
        for annotation, segment_ids, semantic in _labels(root, split):
            assert semantic.dtype == np.uint8 and semantic.shape == segment_ids.shape
            expected = np.full(segment_ids.shape, 255, np.int64)
            for segment in annotation["segments_info"]:
                expected[segment_ids == segment["id"]] = segment["category_id"] - 1
            np.testing.assert_array_equal(semantic, expected)


def test_one_segment_per_stuff_class_and_several_instances_per_thing_class():
    rng = np.random.default_rng(0)
    images_with_repeated_class = touching_same_class = 0
    for _ in range(40):
        image, segment_ids, segments = make_panoptic_sample(rng, 64)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert [s["id"] for s in segments] == list(range(1, len(segments) + 1))
        stuff = [s["category_id"] for s in segments if not s["isthing"]]
        assert len(stuff) == len(set(stuff)) <= NUM_STUFF
        assert PANOPTIC_CLASSES.index("background") in stuff
        things = [s for s in segments if s["isthing"]]
        assert all(PANOPTIC_CLASSES[s["category_id"]] in PANOPTIC_THINGS for s in things)
        assert 1 <= len(things) < SHAPES_PER_IMAGE[1]
        classes = [s["category_id"] for s in things]
        images_with_repeated_class += len(classes) > len(set(classes))
        for i, first in enumerate(things):
            grown = cv2.dilate((segment_ids == first["id"]).astype(np.uint8), np.ones((3, 3)))
            for second in things[i + 1 :]:
                same_class = first["category_id"] == second["category_id"]
                touching_same_class += same_class and bool(grown[segment_ids == second["id"]].any())
    # Instance separation matters: same-class instances share images and often touch.
    assert images_with_repeated_class >= 20
    assert touching_same_class >= 10


def test_generation_is_deterministic_and_seeded(tmp_path):
    generate_panoptic(tmp_path / "a", num_train=2, num_val=1, size=32, seed=0)
    generate_panoptic(tmp_path / "b", num_train=2, num_val=1, size=32, seed=0)
    generate_panoptic(tmp_path / "c", num_train=2, num_val=1, size=32, seed=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_rejects_tiny_images(tmp_path):
    with pytest.raises(ValueError, match="size=16"):
        generate_panoptic(tmp_path, num_train=1, num_val=1, size=16)


def _register_quickstart_panoptic(data_root):
    for name in NAMES:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_quickstart_panoptic(str(data_root))


@pytest.fixture
def registered(data_root):
    """``quickstart_panoptic_{train,val}`` registered from ``data_root``; from the default data
    root again afterwards."""
    _register_quickstart_panoptic(data_root)
    yield data_root
    _register_quickstart_panoptic(os.getenv("DETECTRON2_DATASETS", "datasets"))


def test_registered_dicts_carry_contiguous_segments_and_semantic_maps(registered):
    records = DatasetCatalog.get(f"{QUICKSTART_PANOPTIC}_train")
    metadata = MetadataCatalog.get(f"{QUICKSTART_PANOPTIC}_train")
    assert metadata.stuff_classes == list(PANOPTIC_CLASSES)
    assert metadata.thing_classes == list(PANOPTIC_THINGS)
    assert metadata.evaluator_type == "coco_panoptic_seg"
    assert len(records) == 12
    for record in records:
        segment_ids = rgb_to_id(_read_rgb(record["pan_seg_file_name"]))
        semantic = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        for segment in record["segments_info"]:
            mask = segment_ids == segment["id"]
            assert (semantic[mask] == segment["category_id"]).all()
            assert segment["isthing"] == (
                PANOPTIC_CLASSES[segment["category_id"]] in PANOPTIC_THINGS
            )


def test_panoptic_config_trains_on_the_registered_sets():
    cfg = build_cfg(str(PANOPTIC_CONFIG), [])
    validate_config(cfg)
    assert cfg.DATASETS.TRAIN == ("quickstart_panoptic_train",)
    assert cfg.DATASETS.TEST == ("quickstart_panoptic_val",)
    assert cfg.INPUT.DATASET_MAPPER_NAME == "mask_former_panoptic"
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == len(PANOPTIC_CLASSES)
    test = cfg.MODEL.MASK_FORMER.TEST
    assert test.PANOPTIC_ON and test.SEMANTIC_ON and not test.INSTANCE_ON


@pytest.mark.parametrize("task", ["semantic", "panoptic"])
def test_task_option_picks_the_config(task):
    args = quickstart_tool.parse_args(["--task", task, "SOLVER.MAX_ITER", "5"])
    assert args.task == task and args.opts == ["SOLVER.MAX_ITER", "5"]
    assert args.config_file == str(quickstart_tool.TASKS[task].config)
    assert quickstart_tool.TASKS[task].config.is_file()


def test_task_option_defaults_to_semantic_and_keeps_an_explicit_config():
    args = quickstart_tool.parse_args([])
    assert args.task == "semantic" and args.config_file.endswith("_quickstart.yaml")
    args = quickstart_tool.parse_args(["--task", "panoptic", "--config-file", "mine.yaml"])
    assert args.config_file == "mine.yaml"


def test_task_option_rejects_an_unknown_task(capsys):
    with pytest.raises(SystemExit):
        quickstart_tool.parse_args(["--task", "instance"])
    assert "invalid choice: 'instance'" in capsys.readouterr().err


def test_panoptic_panels_draw_image_truth_and_prediction(registered):
    record = DatasetCatalog.get(NAMES[1])[0]
    truth = rgb_to_id(_read_rgb(record["pan_seg_file_name"]))
    output = {"panoptic_seg": (torch.from_numpy(truth), [dict(s) for s in record["segments_info"]])}
    panels = quickstart_tool.panoptic_panels(record, output, MetadataCatalog.get(NAMES[1]))
    size = 64 * quickstart_tool.VIS_SCALE
    assert [panel.shape for panel in panels] == [(size, size, 3)] * 3
    image = panels[0].astype(np.int64)
    assert all(np.abs(panel.astype(np.int64) - image).mean() > 5 for panel in panels[1:])


class _Trainer:
    def __init__(self, storage):
        self.storage = storage


def _evaluation_storage(panoptic: bool) -> EventStorage:
    """The scalars a training run leaves after its final evaluation."""
    with EventStorage(0) as storage:
        storage.put_scalars(total_loss=1.0, lr=0.1)
        semantic = {"mIoU": 60.0, "pACC": 90.0, "fwIoU": 55.0, "IoU-disc": 70.0, "IoU-box": 50.0}
        storage.put_scalars(**{f"sem_seg/{k}": v for k, v in semantic.items()})
        if panoptic:
            for suffix, offset in (("", 0.0), ("_th", 1.0), ("_st", 2.0)):
                values = {"PQ": 40.0, "SQ": 80.0, "RQ": 50.0}
                storage.put_scalars(
                    **{f"panoptic_seg/{k}{suffix}": v + offset for k, v in values.items()}
                )
    return storage


def test_summary_has_pq_sq_rq_of_things_and_stuff_and_miou():
    results = quickstart_tool.evaluation_results(_Trainer(_evaluation_storage(panoptic=True)))
    assert quickstart_tool.summarize(results) == {
        "PQ": 40.0,
        "SQ": 80.0,
        "RQ": 50.0,
        "things": {"PQ": 41.0, "SQ": 81.0, "RQ": 51.0},
        "stuff": {"PQ": 42.0, "SQ": 82.0, "RQ": 52.0},
        "mIoU": 60.0,
        "pixel_accuracy": 90.0,
        "per_class_IoU": {"disc": 70.0, "box": 50.0},
    }


def test_semantic_summary_has_no_panoptic_quality():
    results = quickstart_tool.evaluation_results(_Trainer(_evaluation_storage(panoptic=False)))
    assert set(results) == {"sem_seg"}
    summary = quickstart_tool.summarize(results)
    assert set(summary) == {"mIoU", "pixel_accuracy", "per_class_IoU"}


@pytest.mark.slow
def test_panoptic_quickstart_runs_end_to_end(registered, tmp_path, monkeypatch, capsys):
    """Two iterations of a tiny model through tools/quickstart.py --task panoptic."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(registered))
    task = quickstart_tool.TASKS["panoptic"]
    is_generated = partial(is_panoptic_generated, num_train=12, num_val=4)
    monkeypatch.setitem(
        quickstart_tool.TASKS, "panoptic", dataclasses.replace(task, is_generated=is_generated)
    )
    output_dir = tmp_path / "out"
    opts = tiny_model_opts(output_dir, 2) + ["TEST.REPORT.ENABLED", "False"]
    threads = torch.get_num_threads()
    try:
        quickstart_tool.main(
            ["--task", "panoptic", "--num-processes", "1", "--num-vis", "2", *opts]
        )
    finally:
        torch.set_num_threads(threads)  # the tool's process runs single-threaded
    summary = json.loads((output_dir / "quickstart_results.json").read_text())
    assert {"PQ", "SQ", "RQ", "things", "stuff", "mIoU", "per_class_IoU"} <= set(summary)
    assert all(0 <= summary[group]["PQ"] <= 100 for group in ("things", "stuff"))
    assert set(summary["per_class_IoU"]) == set(PANOPTIC_CLASSES)
    assert len(list((output_dir / "visualizations").glob("*.png"))) == 2
    printed = capsys.readouterr().out
    assert "SeMask panoptic quick-start finished" in printed and "things  PQ" in printed
