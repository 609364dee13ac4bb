"""Panoptic data set registration (semask.data.panoptic_datasets) on tiny COCO panoptic trees, and
the built-in COCO / ADE20K panoptic and instance registrations."""

import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES, COCO_CATEGORIES
from PIL import Image

from semask.data import DataError
from semask.data.ade20k_categories import (
    ADE20K_INSTANCE_NAMES,
    ADE20K_THING_IDS,
    ade20k_instance_categories,
    ade20k_panoptic_categories,
)
from semask.data.panoptic_datasets import panoptic_metadata, register_panoptic
from semask.data.panoptic_labels import id_to_rgb

NAME = "test_tiny_panoptic"
# Dataset ids in no order; sorted they are person 1, car 3, road 5, sky 7.
CATEGORIES = [
    {"id": 7, "name": "sky", "isthing": 0, "color": [70, 130, 180]},
    {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 5, "name": "road", "isthing": 0, "color": [128, 64, 128]},
    {"id": 3, "name": "car", "isthing": 1, "color": [0, 0, 142]},
]
CONTIGUOUS = {1: 0, 3: 1, 5: 2, 7: 3}


def _segments(ids, categories):
    """segments_info of segment ids [H, W] with ``categories``: {segment id: (category, crowd)}."""
    segments = []
    for segment_id, (category, crowd) in categories.items():
        ys, xs = np.nonzero(ids == segment_id)
        bbox = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
        segments.append(
            {
                "id": segment_id,
                "category_id": category,
                "iscrowd": crowd,
                "area": len(ys),
                "bbox": bbox,
            }
        )
    return segments


def write_tree(root, annotations=None):
    """A COCO panoptic tree of two images under ``root``: things, stuff, a crowd region and void.
    Returns the paths (image root, panoptic root, JSON, semantic root)."""
    image_root, panoptic_root, semantic_root = (root / d for d in ("images", "panoptic", "sem"))
    for folder in (image_root, panoptic_root, semantic_root):
        folder.mkdir(parents=True)
    first = np.array(
        [
            [7, 7, 7, 7, 7, 7],
            [2001, 2001, 0, 300000, 300000, 7],
            [2001, 2001, 5_000_000, 5_000_000, 300000, 0],
        ]
    )
    second = np.array([[2002, 5_000_000], [5_000_000, 5_000_000]])
    labels = {
        11: (first, {7: (7, 0), 2001: (1, 0), 300000: (3, 1), 5_000_000: (5, 0)}),
        42: (second, {2002: (1, 1), 5_000_000: (5, 0)}),
    }
    images, default_annotations = [], []
    for image_id, (ids, categories) in labels.items():
        stem = f"{image_id:012d}"
        Image.fromarray(np.zeros((*ids.shape, 3), np.uint8)).save(image_root / f"{stem}.jpg")
        Image.fromarray(id_to_rgb(ids)).save(panoptic_root / f"{stem}.png")
        Image.fromarray(np.zeros(ids.shape, np.uint8)).save(semantic_root / f"{stem}.png")
        height, width = ids.shape
        images.append(
            {"id": image_id, "file_name": f"{stem}.jpg", "height": height, "width": width}
        )
        default_annotations.append(
            {
                "image_id": image_id,
                "file_name": f"{stem}.png",
                "segments_info": _segments(ids, categories),
            }
        )
    panoptic_json = root / "panoptic.json"
    content = {
        "images": images,
        "annotations": default_annotations if annotations is None else annotations,
        "categories": CATEGORIES,
    }
    panoptic_json.write_text(json.dumps(content))
    return image_root, panoptic_root, panoptic_json, semantic_root, content


@pytest.fixture
def registered():
    """Register NAME (with a semantic root unless told otherwise); removed afterwards."""

    def register(image_root, panoptic_root, panoptic_json, semantic_root, **kwargs):
        register_panoptic(
            NAME,
            image_root=str(image_root),
            panoptic_root=str(panoptic_root),
            panoptic_json=str(panoptic_json),
            sem_seg_root=None if semantic_root is None else str(semantic_root),
            categories=CATEGORIES,
            **kwargs,
        )
        return NAME

    yield register
    if NAME in DatasetCatalog.list():
        DatasetCatalog.remove(NAME)
        MetadataCatalog.remove(NAME)


def test_dataset_dicts(tmp_path, registered):
    image_root, panoptic_root, panoptic_json, semantic_root, content = write_tree(tmp_path)
    dicts = DatasetCatalog.get(registered(image_root, panoptic_root, panoptic_json, semantic_root))
    assert [d["image_id"] for d in dicts] == [11, 42]
    for record, image, annotation in zip(dicts, content["images"], content["annotations"]):
        stem = os.path.splitext(image["file_name"])[0]
        assert record["file_name"] == str(image_root / f"{stem}.jpg")
        assert record["pan_seg_file_name"] == str(panoptic_root / f"{stem}.png")
        assert record["sem_seg_file_name"] == str(semantic_root / f"{stem}.png")
        assert (record["height"], record["width"]) == (image["height"], image["width"])
        assert len(record["segments_info"]) == len(annotation["segments_info"])
        for segment, source in zip(record["segments_info"], annotation["segments_info"]):
            assert segment["category_id"] == CONTIGUOUS[source["category_id"]]
            assert segment["isthing"] == (source["category_id"] in (1, 3))
            for key in ("id", "iscrowd", "area", "bbox"):
                assert segment[key] == source[key]
    crowd = [s for s in dicts[0]["segments_info"] if s["iscrowd"]]
    assert [(s["id"], s["category_id"], s["isthing"]) for s in crowd] == [(300000, 1, True)]


def test_metadata(tmp_path, registered):
    paths = write_tree(tmp_path)[:4]
    metadata = MetadataCatalog.get(registered(*paths, evaluator_type="ade20k_panoptic_seg"))
    assert metadata.stuff_classes == ["person", "car", "road", "sky"]
    assert metadata.thing_classes == ["person", "car"]
    assert metadata.stuff_colors == [[220, 20, 60], [0, 0, 142], [128, 64, 128], [70, 130, 180]]
    assert metadata.thing_colors == [[220, 20, 60], [0, 0, 142]]
    assert metadata.thing_dataset_id_to_contiguous_id == {1: 0, 3: 1}
    assert metadata.stuff_dataset_id_to_contiguous_id == CONTIGUOUS
    assert [metadata.image_root, metadata.panoptic_root, metadata.panoptic_json] == [
        str(p) for p in paths[:3]
    ]
    assert metadata.sem_seg_root == str(paths[3])
    assert metadata.evaluator_type == "ade20k_panoptic_seg"
    assert (metadata.ignore_label, metadata.label_divisor) == (255, 1000)


def test_without_semantic_root(tmp_path, registered):
    image_root, panoptic_root, panoptic_json, _, _ = write_tree(tmp_path)
    name = registered(image_root, panoptic_root, panoptic_json, None)
    assert all("sem_seg_file_name" not in d for d in DatasetCatalog.get(name))
    assert not hasattr(MetadataCatalog.get(name), "sem_seg_root")
    assert MetadataCatalog.get(name).evaluator_type == "coco_panoptic_seg"


def test_registration_reads_nothing(tmp_path, registered):
    missing = tmp_path / "nowhere"
    name = registered(missing, missing, missing / "panoptic.json", missing)
    with pytest.raises(DataError, match=f"{missing / 'panoptic.json'}: panoptic JSON not found"):
        DatasetCatalog.get(name)


def _segment(**changes):
    return {"id": 7, "category_id": 7, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1], **changes}


@pytest.mark.parametrize(
    "annotations, message",
    [
        (
            [{"image_id": 99, "file_name": "x.png", "segments_info": []}],
            r"annotations\[0\] \(x.png\) has image_id 99, which no entry of 'images' has",
        ),
        (
            [
                {
                    "image_id": 11,
                    "file_name": "000000000011.png",
                    "segments_info": [_segment(category_id=2)],
                }
            ],
            "annotation of 000000000011.png: segment 7 has category_id 2, not one of the 4",
        ),
        (
            [
                {
                    "image_id": 11,
                    "file_name": "000000000011.png",
                    "segments_info": [{"id": 7, "category_id": 7}],
                }
            ],
            "annotation of 000000000011.png: a segment has no iscrowd, area, bbox",
        ),
        ([{"image_id": 11, "segments_info": []}], r"annotations\[0\] has no file_name"),
        (
            [{"image_id": 11, "file_name": "000000000011.png", "segments_info": None}],
            "annotation of 000000000011.png: 'segments_info' is NoneType, not a list",
        ),
        ([], "no annotation"),
    ],
)
def test_malformed_json(tmp_path, registered, annotations, message):
    paths = write_tree(tmp_path, annotations)[:4]
    name = registered(*paths)
    with pytest.raises(DataError, match=message) as error:
        DatasetCatalog.get(name)
    assert str(paths[2]) in str(error.value)


def test_unreadable_json(tmp_path, registered):
    paths = write_tree(tmp_path)[:4]
    name = registered(*paths)
    paths[2].write_text('{"images": [')
    with pytest.raises(DataError, match="panoptic.json: cannot be read as JSON"):
        DatasetCatalog.get(name)
    paths[2].write_text('{"images": []}')
    with pytest.raises(DataError, match="not a COCO panoptic JSON"):
        DatasetCatalog.get(name)


@pytest.mark.parametrize("folder, kind", [(0, "image"), (1, "panoptic PNG"), (3, "semantic PNG")])
def test_missing_files(tmp_path, registered, folder, kind):
    paths = write_tree(tmp_path)[:4]
    name = registered(*paths)
    missing = sorted(paths[folder].iterdir())[1]
    missing.unlink()
    with pytest.raises(DataError) as error:
        DatasetCatalog.get(name)
    assert str(error.value) == (
        f"{paths[folder]}: 1 {kind}(s) of {paths[2]} not found: {missing.name}"
    )


def test_missing_folder(tmp_path, registered):
    paths = write_tree(tmp_path)[:4]
    name = registered(tmp_path / "no_images", *paths[1:])
    with pytest.raises(DataError, match="no_images: folder of the images of .* not found"):
        DatasetCatalog.get(name)


def test_bad_categories():
    with pytest.raises(DataError, match="category ids repeated: \\[1\\]"):
        panoptic_metadata(CATEGORIES + [CATEGORIES[1]])
    with pytest.raises(DataError, match="category 0 .* has no isthing, color"):
        panoptic_metadata([{"id": 1, "name": "a"}])


def test_coco_panoptic_registration():
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    ordered = sorted(COCO_CATEGORIES, key=lambda c: c["id"])
    things = [c for c in ordered if c["isthing"]]
    for split in ("train", "val"):
        metadata = MetadataCatalog.get(f"coco_2017_{split}_panoptic_with_sem_seg")
        assert metadata.stuff_classes == [c["name"] for c in ordered]
        assert metadata.thing_classes == [c["name"] for c in things]
        assert len(metadata.stuff_classes) == 133 and len(metadata.thing_classes) == 80
        assert metadata.stuff_dataset_id_to_contiguous_id == {
            c["id"]: i for i, c in enumerate(ordered)
        }
        assert metadata.thing_dataset_id_to_contiguous_id == {
            c["id"]: ordered.index(c) for c in things
        }
        assert metadata.evaluator_type == "coco_panoptic_seg"
        coco = os.path.join(root, "coco")
        assert metadata.sem_seg_root == os.path.join(coco, f"panoptic_semseg_{split}2017")
        assert metadata.image_root == os.path.join(coco, f"{split}2017")
        assert metadata.json_file == os.path.join(
            coco, "annotations", f"instances_{split}2017.json"
        )
        detectron2_own = MetadataCatalog.get(f"coco_2017_{split}_panoptic")
        for key in ("thing_classes", "thing_colors", "stuff_classes", "stuff_colors"):
            assert getattr(detectron2_own, key) == getattr(metadata, key), key
        assert detectron2_own.stuff_dataset_id_to_contiguous_id == (
            metadata.stuff_dataset_id_to_contiguous_id
        )


def test_ade20k_categories():
    categories = ade20k_panoptic_categories()
    assert [c["id"] for c in categories] == list(range(150))
    assert [c["name"] for c in categories] == ADE20K_SEM_SEG_CATEGORIES
    assert sum(c["isthing"] for c in categories) == 100
    assert [c["id"] for c in categories if c["isthing"]] == list(ADE20K_THING_IDS)
    # Mask2Former's split: bannister (95) is a thing, escalator (96) is stuff, wall (0) is stuff.
    assert [categories[i]["isthing"] for i in (0, 12, 95, 96)] == [0, 1, 1, 0]
    assert all(len(c["color"]) == 3 and all(0 <= v <= 255 for v in c["color"]) for c in categories)
    instances = ade20k_instance_categories()
    assert len({c["name"] for c in instances}) == 100 == len(ADE20K_INSTANCE_NAMES)
    assert all("," not in c["name"] and c["name"] for c in instances)
    assert instances[3] == {"id": 12, "name": "person"}


def test_ade20k_registration():
    base = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "ADEChallengeData2016")
    for split, folder in (("train", "training"), ("val", "validation")):
        panoptic = MetadataCatalog.get(f"ade20k_panoptic_{split}")
        assert len(panoptic.stuff_classes) == 150 and len(panoptic.thing_classes) == 100
        assert panoptic.evaluator_type == "ade20k_panoptic_seg"
        assert panoptic.thing_dataset_id_to_contiguous_id == {i: i for i in ADE20K_THING_IDS}
        assert panoptic.panoptic_root == os.path.join(base, f"ade20k_panoptic_{split}")
        assert panoptic.panoptic_json == os.path.join(base, f"ade20k_panoptic_{split}.json")
        assert panoptic.sem_seg_root == os.path.join(base, "annotations_detectron2", folder)
        assert panoptic.json_file == os.path.join(base, f"ade20k_instance_{split}.json")
        instance = MetadataCatalog.get(f"ade20k_instance_{split}")
        assert instance.evaluator_type == "coco"
        assert instance.thing_classes == list(ADE20K_INSTANCE_NAMES)
        assert instance.thing_dataset_id_to_contiguous_id == {
            i: k for k, i in enumerate(ADE20K_THING_IDS)
        }
        assert instance.json_file == panoptic.json_file
        assert instance.image_root == panoptic.image_root == os.path.join(base, "images", folder)
