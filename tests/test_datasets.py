"""Data-set registration: names, metadata and loading of the quick-start split."""

import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from semask.data.builtin import COCO_STUFF_CLASSES, COCO_STUFF_IDS, palette, register_quickstart
from semask.data.quickstart import QUICKSTART_CLASSES, QUICKSTART_COLORS, generate

REGISTERED = {
    "quickstart_sem_seg_train": 7,
    "quickstart_sem_seg_val": 7,
    "ade20k_sem_seg_train": 150,
    "ade20k_sem_seg_val": 150,
    "cityscapes_fine_sem_seg_train": 19,
    "cityscapes_fine_sem_seg_val": 19,
    "coco_stuff_10k_sem_seg_train": 171,
    "coco_stuff_10k_sem_seg_test": 171,
}


@pytest.mark.parametrize("name,num_classes", sorted(REGISTERED.items()))
def test_registered_with_metadata(name, num_classes):
    import semask.data  # noqa: F401  (registers)

    assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get(name)
    assert len(meta.stuff_classes) == num_classes
    assert len(meta.stuff_colors) == num_classes
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in meta.stuff_colors)
    assert meta.ignore_label == 255
    assert meta.evaluator_type in ("sem_seg", "cityscapes_sem_seg")


def test_coco_stuff_classes():
    assert len(COCO_STUFF_CLASSES) == len(set(COCO_STUFF_CLASSES)) == 171
    assert len(COCO_STUFF_IDS) == 171 and list(COCO_STUFF_IDS) == sorted(COCO_STUFF_IDS)
    assert COCO_STUFF_CLASSES[0] == "person" and COCO_STUFF_CLASSES[-1] == "wood"
    assert 12 not in COCO_STUFF_IDS and COCO_STUFF_IDS[-1] == 182


def test_palette_is_distinct():
    colours = palette(171)
    assert len({tuple(colour) for colour in colours}) == 171


def test_quickstart_split_loads(tmp_path):
    generate(tmp_path / "quickstart", num_train=4, num_val=2, size=32)
    DatasetCatalog.remove("quickstart_sem_seg_train")
    DatasetCatalog.remove("quickstart_sem_seg_val")
    MetadataCatalog.remove("quickstart_sem_seg_train")
    MetadataCatalog.remove("quickstart_sem_seg_val")
    try:
        register_quickstart(str(tmp_path))
        dicts = DatasetCatalog.get("quickstart_sem_seg_val")
        assert len(dicts) == 2
        assert dicts[0]["file_name"].endswith(".jpg")
        assert dicts[0]["sem_seg_file_name"].endswith(".png")
        assert MetadataCatalog.get("quickstart_sem_seg_val").stuff_classes == list(
            QUICKSTART_CLASSES
        )
    finally:
        for name in ("quickstart_sem_seg_train", "quickstart_sem_seg_val"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_quickstart(os.getenv("DETECTRON2_DATASETS", "datasets"))


# (first class, last class, image folder, label folder) under $DETECTRON2_DATASETS, as the
# preparation scripts and datasets/README.md lay them out.
LAYOUT = {
    "quickstart_sem_seg_val": (
        "background",
        "shadow",
        "quickstart/images/validation",
        "quickstart/annotations/validation",
    ),
    "ade20k_sem_seg_val": (
        "wall",
        "flag",
        "ADEChallengeData2016/images/validation",
        "ADEChallengeData2016/annotations_detectron2/validation",
    ),
    "coco_stuff_10k_sem_seg_test": (
        "person",
        "wood",
        "coco/coco_stuff_10k/images_detectron2/test",
        "coco/coco_stuff_10k/annotations_detectron2/test",
    ),
    "cityscapes_fine_sem_seg_val": (
        "road",
        "bicycle",
        "cityscapes/leftImg8bit/val",
        "cityscapes/gtFine/val",
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_registered_names_and_folders(name):
    import semask.data  # noqa: F401  (registers)

    first, last, images, labels = LAYOUT[name]
    meta = MetadataCatalog.get(name)
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    assert (meta.stuff_classes[0], meta.stuff_classes[-1]) == (first, last)
    image_dir = meta.get("image_root", None) or meta.get("image_dir")
    label_dir = meta.get("sem_seg_root", None) or meta.get("gt_dir")
    assert os.path.normpath(image_dir) == os.path.normpath(os.path.join(root, images))
    assert os.path.normpath(label_dir) == os.path.normpath(os.path.join(root, labels))


def test_quickstart_colours_are_its_own():
    import semask.data  # noqa: F401  (registers)

    colours = MetadataCatalog.get("quickstart_sem_seg_train").stuff_colors
    assert [tuple(c) for c in colours] == [tuple(c) for c in QUICKSTART_COLORS]
