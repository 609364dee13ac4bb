"""Folder data sets: registration from ``classes.txt`` and ``dataset.yaml``, pairing of images and
label maps, label mapping (``reduce_zero_label``, own ignore value) in training and evaluation,
``MODEL.SEM_SEG_HEAD.NUM_CLASSES 0``."""

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator as D2SemSegEvaluator

from semask.data import (
    FolderDatasetError,
    LabelMapping,
    MaskFormerSemanticDatasetMapper,
    SemanticEvalMapper,
    register_folder_dataset,
    register_folder_datasets,
)
from semask.data.folder import FolderMetadata, read_folder_metadata, write_folder_metadata
from semask.data.image_io import DataError
from semask.data.quickstart import QUICKSTART_CLASSES, QUICKSTART_COLORS, generate
from semask.engine import ConfigError, build_cfg, validate_config
from semask.evaluation import SemSegEvaluator
from semask.report import SemSegReportEvaluator

QUICKSTART = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
CLASSES = ("sky", "road", "car")


def write_folder(root, stored_labels, metadata=None, classes=CLASSES, image_suffix=".png"):
    """A folder data set at ``root``: one validation and one training image per stored label map
    of ``stored_labels`` (name -> uint8 [H, W]), ``classes.txt`` and, if given, ``dataset.yaml``
    with the text ``metadata``."""
    root = Path(root)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for stem, label in stored_labels.items():
            image = np.full(label.shape + (3,), 90, np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{stem}{image_suffix}"), image)
            cv2.imwrite(str(root / "annotations" / split / f"{stem}.png"), label)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    if metadata is not None:
        (root / "dataset.yaml").write_text(metadata)
    return root


@pytest.fixture
def catalog():
    """Removes the data sets a test registers (names it appends) from detectron2's catalogs."""
    names = []
    yield names
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def register(catalog, name, root):
    names = register_folder_dataset(name, root)
    catalog.extend(names)
    return names


def test_discovery_registers_both_splits_with_metadata(tmp_path, catalog):
    colours = "colors:\n  - [1, 2, 3]\n  - [4, 5, 6]\n  - [7, 8, 9]\n"
    write_folder(tmp_path / "mine", {"a": np.zeros((4, 6), np.uint8)}, metadata=colours)
    (tmp_path / "no_classes" / "images").mkdir(parents=True)  # not a folder data set
    names = register_folder_datasets(tmp_path)
    catalog.extend(names)
    assert names == ["mine_sem_seg_train", "mine_sem_seg_val"]
    meta = MetadataCatalog.get("mine_sem_seg_val")
    assert meta.stuff_classes == list(CLASSES)
    assert meta.stuff_colors == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    (record,) = DatasetCatalog.get("mine_sem_seg_val")
    assert record["file_name"] == str(tmp_path / "mine" / "images" / "validation" / "a.png")
    assert record["sem_seg_file_name"].endswith("annotations/validation/a.png")


def test_registration_reads_no_image_and_lists_no_split(tmp_path, catalog):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "classes.txt").write_text("one\ntwo\n\n")
    catalog.extend(register_folder_datasets(tmp_path))
    assert MetadataCatalog.get("bare_sem_seg_train").stuff_classes == ["one", "two"]
    assert len(MetadataCatalog.get("bare_sem_seg_train").stuff_colors) == 2
    with pytest.raises(FolderDatasetError, match=r"bare/images/training: folder not found"):
        DatasetCatalog.get("bare_sem_seg_train")


def test_any_image_suffix_pairs_with_png_labels(tmp_path, catalog):
    root = write_folder(tmp_path / "jpegs", {"x": np.zeros((4, 4), np.uint8)}, image_suffix=".JPEG")
    register(catalog, "jpegs", root)
    assert DatasetCatalog.get("jpegs_sem_seg_train")[0]["file_name"].endswith("x.JPEG")


def test_unmatched_images_and_labels_are_named(tmp_path, catalog):
    labels = {stem: np.zeros((4, 4), np.uint8) for stem in ("a", "b", "c")}
    root = write_folder(tmp_path / "odd", labels)
    (root / "images" / "validation" / "b.png").unlink()
    (root / "annotations" / "validation" / "c.png").unlink()
    (root / "images" / "validation" / "extra.jpg").write_bytes(b"")
    register(catalog, "odd", root)
    with pytest.raises(FolderDatasetError) as error:
        DatasetCatalog.get("odd_sem_seg_val")
    text = str(error.value)
    assert "do not pair up by file stem" in text
    assert f"2 image(s) of {root / 'images' / 'validation'} without a label map" in text
    assert ": c.png, extra.jpg" in text
    assert f"1 label map(s) of {root / 'annotations' / 'validation'} without an image" in text
    assert text.endswith(": b.png")
    assert len(DatasetCatalog.get("odd_sem_seg_train")) == 3


@pytest.mark.parametrize(
    "metadata,expected",
    [
        ("ignore: 0\n", "dataset.yaml: unknown key 'ignore' (known keys: ignore_label, "),
        ("ignore_label: none\n", "dataset.yaml: key 'ignore_label' = 'none': must be an integer"),
        ("ignore_label: 2\n", "key 'ignore_label' = 2: is a stored class id (0..2)"),
        (
            "reduce_zero_label: true\nignore_label: 3\n",
            "key 'ignore_label' = 3: is a stored class id (1..3)",
        ),
        ("reduce_zero_label: 1\n", "key 'reduce_zero_label' = 1: must be true or false"),
        ("colors: [[1, 2, 3]]\n", "key 'colors' = 1 entries: must be a list of 3 [R, G, B]"),
        (
            "colors: [[1, 2, 3], [4, 5], [0, 0, 0]]\n",
            "'colors' entry 1 = [4, 5]: must be [R, G, B]",
        ),
        ("colors: red\n", "key 'colors' = 'red': must be a list of 3"),
        ("- 1\n", "dataset.yaml: must be a mapping of ['ignore_label'"),
        ("ignore_label: [\n", "dataset.yaml: cannot be read as YAML"),
    ],
)
def test_bad_metadata_names_the_file_and_key(tmp_path, metadata, expected):
    root = write_folder(tmp_path / "bad", {}, metadata=metadata)
    with pytest.raises(FolderDatasetError) as error:
        read_folder_metadata(root)
    assert str(error.value).startswith(str(root / "dataset.yaml"))
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "classes.txt: no class names"),
        ("a\n\nb\n", "classes.txt: line 2 is empty"),
        ("a\nb\na\n", "classes.txt: class names repeated: a"),
        ("".join(f"c{i}\n" for i in range(256)), "classes.txt: 256 classes; at most 255"),
    ],
)
def test_bad_classes_file_is_named(tmp_path, text, expected):
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(FolderDatasetError, match=expected):
        read_folder_metadata(tmp_path)


def test_bad_metadata_at_discovery_is_a_warning_and_a_config_error(tmp_path, catalog, caplog):
    write_folder(tmp_path / "broken", {}, metadata="ignore_lable: 0\n")
    with caplog.at_level(logging.WARNING, logger="semask.data.folder"):
        catalog.extend(["broken_sem_seg_train", "broken_sem_seg_val"])
        assert register_folder_datasets(tmp_path) == []
    assert "folder data set broken cannot be used" in caplog.text
    assert "unknown key 'ignore_lable'" in caplog.text
    with pytest.raises(FolderDatasetError, match="unknown key 'ignore_lable'"):
        DatasetCatalog.get("broken_sem_seg_val")
    opts = ["DATASETS.TRAIN", "('broken_sem_seg_train',)"]
    with pytest.raises(ConfigError, match=r"'broken_sem_seg_train' cannot be used: .*dataset.yaml"):
        build_cfg(str(QUICKSTART), opts + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "0"])
    with pytest.raises(ConfigError, match=r"DATASETS.TRAIN = 'broken_sem_seg_train': data set"):
        validate_config(build_cfg(str(QUICKSTART), opts))


def test_a_taken_name_is_not_registered_again(tmp_path, catalog, caplog):
    write_folder(tmp_path / "coco_stuff_10k", {})
    write_folder(tmp_path / "quickstart", {})
    with caplog.at_level(logging.WARNING, logger="semask.data.folder"):
        assert register_folder_datasets(tmp_path) == []
    assert (
        "coco_stuff_10k: not registered as a folder data set, coco_stuff_10k_sem_seg_train is"
        in (caplog.text)
    )
    assert "coco_stuff_10k_sem_seg_val" not in DatasetCatalog.list()
    assert "quickstart_sem_seg_train, quickstart_sem_seg_val is registered already" in caplog.text
    assert MetadataCatalog.get("quickstart_sem_seg_train").stuff_classes == list(QUICKSTART_CLASSES)


def test_quickstart_folder_is_a_folder_data_set(tmp_path, catalog, capsys):
    generate(tmp_path / "qs", num_train=2, num_val=1, size=32)
    progress = capsys.readouterr().err
    assert "quick-start data: 100%" in progress
    assert re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d", progress)  # [elapsed<time left]
    metadata = read_folder_metadata(tmp_path / "qs")
    assert metadata == FolderMetadata(QUICKSTART_CLASSES, QUICKSTART_COLORS)
    catalog.extend(register_folder_datasets(tmp_path))
    assert len(DatasetCatalog.get("qs_sem_seg_train")) == 2


def test_metadata_written_reads_back(tmp_path):
    written = FolderMetadata(("a", "b"), ((1, 2, 3), (4, 5, 6)), LabelMapping(7, True))
    write_folder_metadata(tmp_path, written)
    assert read_folder_metadata(tmp_path) == written


# Stored labels of a 3-class data set with reduce_zero_label and ignore_label 250: 0 and 250 are
# unlabelled, 1..3 are classes 0..2.
STORED = np.array([[1, 1, 2, 2], [3, 3, 0, 250]], np.uint8)
TRAINING = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
MAPPED_METADATA = "reduce_zero_label: true\nignore_label: 250\n"


def test_reduce_zero_label_and_ignore_value_in_the_training_mapper(tmp_path, catalog):
    names = register(catalog, "mapped", write_folder(tmp_path, {"a": STORED}, MAPPED_METADATA))
    mapper = MaskFormerSemanticDatasetMapper(
        True,
        augmentations=[],
        image_format="RGB",
        ignore_label=255,
        num_classes=3,
        size_divisibility=-1,
    )
    out = mapper(DatasetCatalog.get(names[0])[0])
    assert torch.equal(out["sem_seg"], torch.as_tensor(TRAINING))
    assert out["instances"].gt_classes.tolist() == [0, 1, 2]
    assert "label_mapping" not in out


def test_stored_values_outside_the_mapping_are_named(tmp_path, catalog):
    stored = STORED.copy()
    stored[0, 0] = 4  # class 3 under reduce_zero_label: not one of 3 classes
    names = register(catalog, "mapped_bad", write_folder(tmp_path, {"a": stored}, MAPPED_METADATA))
    mapper = SemanticEvalMapper(
        augmentations=[], image_format="RGB", ignore_label=255, num_classes=3
    )
    with pytest.raises(DataError) as error:
        mapper(DatasetCatalog.get(names[1])[0])
    assert str(error.value).endswith(
        "has values that are neither a class id 1..3 (reduce_zero_label: class k stored as k+1, "
        "0 unlabelled) (MODEL.SEM_SEG_HEAD.NUM_CLASSES 3) nor the ignore label 250: 4"
    )


def one_hot(labels, num_classes=3):
    """Prediction scores [K, H, W] whose argmax is ``labels`` [H, W]."""
    return (
        torch.nn.functional.one_hot(torch.as_tensor(labels), num_classes).permute(2, 0, 1).float()
    )


@pytest.mark.parametrize("evaluator_class", [SemSegEvaluator, SemSegReportEvaluator])
def test_evaluation_scores_the_mapped_labels(tmp_path, catalog, evaluator_class):
    names = register(catalog, "mapped_eval", write_folder(tmp_path, {"a": STORED}, MAPPED_METADATA))
    evaluator = evaluator_class(names[1], distributed=False)
    evaluator.reset()
    (record,) = DatasetCatalog.get(names[1])
    prediction = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    evaluator.process([record], [{"sem_seg": one_hot(prediction)}])
    results = evaluator.evaluate()["sem_seg"]
    # 6 labelled pixels. sky: 1 hit, union 3; road: 2 hits, union 3; car: 1 hit, union 2.
    assert results["IoU-sky"] == pytest.approx(100 / 3)
    assert results["IoU-road"] == pytest.approx(200 / 3)
    assert results["IoU-car"] == pytest.approx(50.0)
    assert results["mIoU"] == pytest.approx(50.0)
    assert results["pACC"] == pytest.approx(400 / 6)


def test_evaluation_without_mapping_equals_detectron2s(tmp_path, catalog):
    stored = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    names = register(catalog, "plain_eval", write_folder(tmp_path, {"a": stored}))
    (record,) = DatasetCatalog.get(names[1])
    prediction = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    results = []
    for evaluator in (SemSegEvaluator(names[1], False), D2SemSegEvaluator(names[1], False)):
        evaluator.reset()
        evaluator.process([record], [{"sem_seg": one_hot(prediction)}])
        results.append(evaluator.evaluate()["sem_seg"])
    assert results[0] == pytest.approx(results[1], nan_ok=True)
    assert results[0]["IoU-car"] == pytest.approx(100 / 3)  # car: 1 hit, union 3


def test_num_classes_zero_is_the_training_sets_class_count(tmp_path, catalog):
    names = register(catalog, "counted", write_folder(tmp_path, {}))
    opts = ["DATASETS.TRAIN", f"('{names[0]}',)", "DATASETS.TEST", f"('{names[1]}',)"]
    cfg = build_cfg(str(QUICKSTART), opts + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "0"])
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 3
    validate_config(cfg)
    with pytest.raises(ConfigError, match=f"NUM_CLASSES = 7: data set '{names[0]}'"):
        validate_config(build_cfg(str(QUICKSTART), opts))  # the config's explicit 7


def test_num_classes_zero_needs_a_registered_training_set():
    with pytest.raises(ConfigError, match=r"NUM_CLASSES = 0 .*'nowhere_train' is not registered"):
        build_cfg(
            str(QUICKSTART),
            ["DATASETS.TRAIN", "('nowhere_train',)", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "0"],
        )
