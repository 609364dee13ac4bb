"""semask.data.image_io: one reader for every path (training, evaluation, demo, predictor)."""

import importlib.util
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.data import DatasetMapper
from PIL import Image, ImageFile, ImageOps
from test_mapper import NUM_CLASSES, _mapper
from test_predictor import contract_cfg

from semask.data import (
    DataError,
    ImageReadError,
    MaskFormerSemanticDatasetMapper,
    SemanticEvalMapper,
    read_image,
    read_label,
)
from semask.predictor import SeMaskPredictor

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_demo():
    spec = importlib.util.spec_from_file_location("semask_demo_io", REPO_ROOT / "demo" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()
RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _eval_mapper(image_format="RGB"):
    return SemanticEvalMapper(
        augmentations=[], image_format=image_format, ignore_label=255, num_classes=NUM_CLASSES
    )


def _paths(image_file, label_size=None):
    """(training mapper RGB, eval mapper RGB, demo reader RGB) arrays of ``image_file``."""
    width, height = label_size or Image.open(image_file).size
    label_file = image_file.with_name(image_file.stem + "_label.png")
    Image.fromarray(np.zeros((height, width), np.uint8)).save(label_file)
    record = {"file_name": str(image_file), "sem_seg_file_name": str(label_file)}
    train = _mapper([])(dict(record))["image"].permute(1, 2, 0).numpy()
    evaluation = _eval_mapper()(dict(record))["image"].permute(1, 2, 0).numpy()
    demo_bgr = demo.read_image(image_file)
    return train, evaluation, demo_bgr[:, :, ::-1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "oriented.png"
    Image.fromarray(PIXELS).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(read_image(str(path), "RGB"), expected)
    assert np.array_equal(read_image(str(path), "BGR"), expected[:, :, ::-1])


def test_exif_rotated_jpeg_is_rotated_in_every_path(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(PIXELS).save(path, exif=exif, quality=100)
    rotated = np.rot90(np.asarray(Image.open(path).convert("RGB")), -1)
    for array in _paths(path, label_size=(20, 30)):
        assert array.shape == (30, 20, 3)
        assert np.array_equal(array, rotated)
    prediction = SeMaskPredictor(contract_cfg()).predict(demo.read_image(path))
    assert prediction.labels.shape == (30, 20)
    # A label map stored in the file's unrotated pixel layout does not fit the shown image.
    with pytest.raises(ValueError, match=r"is 30x20 \(width x height\) but its image .* is 20x30"):
        _paths(path, label_size=(30, 20))


GRAY = np.asarray(Image.fromarray(PIXELS).convert("L"))
DEEP_GRAY = PIXELS[:, :, 0].astype(np.uint16) * 257 + 100
DEEP_RGB = PIXELS.astype(np.uint16) * 257 + 100


def _save_mode(path, mode):
    """Write PIXELS as an image of Pillow ``mode`` (RGB;16: a 16-bit colour PNG) and return the
    RGB uint8 array every path must give for it."""
    if mode == "I;16":
        Image.fromarray(DEEP_GRAY).save(path)
        return np.repeat(np.round(DEEP_GRAY / 257).astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "RGB;16":
        cv2.imwrite(str(path), DEEP_RGB[:, :, ::-1])
        return np.round(DEEP_RGB / 257).astype(np.uint8)
    Image.fromarray(PIXELS).convert(mode).save(path)
    if mode in ("L", "LA"):
        return np.repeat(GRAY[:, :, None], 3, axis=2)
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize(
    "mode, suffix",
    [
        ("L", ".png"),
        ("LA", ".png"),
        ("P", ".png"),
        ("RGBA", ".png"),
        ("CMYK", ".jpg"),
        ("I;16", ".png"),
        ("RGB;16", ".png"),
    ],
)
def test_every_mode_gives_the_same_array_in_every_path(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    expected = _save_mode(path, mode)
    train, evaluation, demo_rgb = _paths(path)
    assert train.shape == (20, 30, 3) and train.dtype == np.uint8
    assert np.array_equal(train, expected)
    assert np.array_equal(evaluation, expected) and np.array_equal(demo_rgb, expected)


def test_16_bit_is_scaled_not_saturated(tmp_path):
    Image.fromarray(np.array([[0, 1000, 32768, 65535]], np.uint16)).save(tmp_path / "g.png")
    assert read_image(str(tmp_path / "g.png"))[0, :, 0].tolist() == [0, 4, 128, 255]
    cv2.imwrite(str(tmp_path / "c.png"), np.array([[[1000, 500, 333]]], np.uint16))
    assert read_image(str(tmp_path / "c.png"), "BGR")[0, 0].tolist() == [4, 2, 1]


@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_jpeg_is_refused_naming_the_file_in_every_path(
    tmp_path, monkeypatch, caplog, load_truncated
):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    whole = tmp_path / "whole.jpg"
    Image.fromarray(np.kron(PIXELS, np.ones((8, 8, 1), np.uint8))).save(whole, quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    pattern = f"{path}: truncated image file"
    with pytest.raises(ImageReadError, match=pattern):
        read_image(str(path))
    Image.fromarray(np.zeros((160, 240), np.uint8)).save(tmp_path / "label.png")
    record = {"file_name": str(path), "sem_seg_file_name": str(tmp_path / "label.png")}
    with pytest.raises(ImageReadError, match=pattern):
        _mapper([])(dict(record))
    with pytest.raises(ImageReadError, match=pattern):
        _eval_mapper()(dict(record))
    with caplog.at_level(logging.ERROR):
        assert demo.read_image(path) is None
    assert f"skipping {pattern}" in caplog.text
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated


def test_unreadable_and_missing_files_are_named(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match=f"{text}: not a readable image file"):
        read_image(str(text))
    with pytest.raises(ImageReadError, match=f"{tmp_path / 'gone.png'}: cannot be read"):
        read_label(str(tmp_path / "gone.png"))


def test_labels_are_read_as_values_and_indices(tmp_path):
    values = RNG.integers(0, 5, (6, 7)).astype(np.uint8)
    palette = Image.fromarray(values, mode="L").convert("P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] * 85)
    palette.save(tmp_path / "p.png")
    Image.fromarray(values.astype(np.uint16) * 300).save(tmp_path / "deep.png")
    assert np.array_equal(read_label(str(tmp_path / "p.png")), values)
    deep = read_label(str(tmp_path / "deep.png"))
    assert deep.dtype == np.int64 and np.array_equal(deep, values.astype(np.int64) * 300)
    Image.fromarray(PIXELS).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match=f"{tmp_path / 'rgb.png'}: .* single-channel"):
        read_label(str(tmp_path / "rgb.png"))


def test_eval_mapper_gives_detectron2_s_test_input_on_a_plain_jpeg(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.fromarray(np.kron(PIXELS, np.ones((4, 4, 1), np.uint8))).save(path)
    Image.fromarray(np.full((80, 120), 2, np.uint8)).save(tmp_path / "plain_label.png")
    record = {
        "file_name": str(path),
        "sem_seg_file_name": str(tmp_path / "plain_label.png"),
        "height": 80,
        "width": 120,
    }
    cfg = semask_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 50
    cfg.INPUT.MAX_SIZE_TEST = 100
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = NUM_CLASSES
    cfg.DATASETS.TEST = ("quickstart_sem_seg_val",)
    ours = SemanticEvalMapper(cfg, "quickstart_sem_seg_val")(dict(record))
    reference = DatasetMapper(cfg, False)(dict(record))
    assert ours["image"].shape == (3, 50, 75)
    assert torch.equal(ours["image"], reference["image"])
    assert (ours["height"], ours["width"]) == (80, 120)
    assert set(ours) == set(reference) - {"sem_seg"}


def test_training_mapper_reads_bad_sample_policy_from_config():
    cfg = semask_cfg()
    cfg.DATASETS.TRAIN = ("quickstart_sem_seg_train",)
    assert cfg.DATALOADER.BAD_SAMPLE_POLICY == "error"
    cfg.DATALOADER.BAD_SAMPLE_POLICY = "skip"
    assert MaskFormerSemanticDatasetMapper(cfg, True).bad_sample_policy == "skip"
    cfg.DATALOADER.BAD_SAMPLE_POLICY = "ignore"
    with pytest.raises(ValueError, match="DATALOADER.BAD_SAMPLE_POLICY .* got 'ignore'"):
        MaskFormerSemanticDatasetMapper(cfg, True)


def test_trainer_test_loader_reads_like_training_and_is_strict(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from semask.engine import Trainer

    exif = Image.Exif()
    exif[0x0112] = 8
    image_file = tmp_path / "phone.jpg"
    Image.fromarray(PIXELS).save(image_file, exif=exif, quality=100)
    label_file = tmp_path / "phone.png"
    Image.fromarray(np.full((30, 20), 9, np.uint8)).save(label_file)
    name = "semask_test_io_eval"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    records = [{"file_name": str(image_file), "sem_seg_file_name": str(label_file)}]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(ignore_label=255, stuff_classes=["a"] * NUM_CLASSES)
    cfg = semask_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = NUM_CLASSES
    cfg.INPUT.MIN_SIZE_TEST = 20
    cfg.DATALOADER.NUM_WORKERS = 0
    with pytest.raises(DataError, match=f"label map {label_file} has values .*: 9"):
        next(iter(Trainer.build_test_loader(cfg, name)))
    Image.fromarray(np.full((30, 20), 255, np.uint8)).save(label_file)
    (item,) = next(iter(Trainer.build_test_loader(cfg, name)))
    assert item["image"].shape == (3, 30, 20)
    assert torch.equal(
        item["image"], torch.from_numpy(read_image(str(image_file))).permute(2, 0, 1)
    )
