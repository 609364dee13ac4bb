"""The quick-start generator: layout, determinism, label values, colour independence."""

import hashlib

import cv2
import numpy as np
import pytest

from semask.data.quickstart import QUICKSTART_CLASSES, generate, is_generated, make_sample


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p.relative_to(root)), hashlib.md5(p.read_bytes()).hexdigest()) for p in files]


def test_generate_writes_ade20k_layout(tmp_path):
    generate(tmp_path, num_train=6, num_val=3, size=48, seed=0)
    images = sorted((tmp_path / "images" / "training").glob("*.jpg"))
    labels = sorted((tmp_path / "annotations" / "training").glob("*.png"))
    assert len(images) == 6 and len(labels) == 6
    assert [p.stem for p in images] == [p.stem for p in labels]
    assert len(list((tmp_path / "images" / "validation").glob("*.jpg"))) == 3
    image = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
    label = cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (48, 48, 3) and label.shape == (48, 48) and label.dtype == np.uint8
    assert label.max() < len(QUICKSTART_CLASSES)
    assert is_generated(tmp_path, num_train=6, num_val=3)
    assert not is_generated(tmp_path, num_train=7, num_val=3)


def test_generate_is_deterministic_and_seeded(tmp_path):
    generate(tmp_path / "a", num_train=3, num_val=2, size=32, seed=0)
    generate(tmp_path / "b", num_train=3, num_val=2, size=32, seed=0)
    generate(tmp_path / "c", num_train=3, num_val=2, size=32, seed=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_samples_cover_every_class_and_colour_does_not_identify_classes():
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, 64) for _ in range(60)]
    counts = np.bincount(np.concatenate([lab.ravel() for _, lab in samples]), minlength=7)
    assert counts.shape == (len(QUICKSTART_CLASSES),) and (counts > 0).all()
    # The mean colour of a class varies widely between images: colour alone cannot tell it.
    for cls in range(1, 6):
        means = [img[lab == cls].mean(0) for img, lab in samples if (lab == cls).sum() > 20]
        assert np.std(np.stack(means), axis=0).mean() > 25, QUICKSTART_CLASSES[cls]


def test_shadows_lie_beside_shapes():
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, labels = make_sample(rng, 64)
        shadow = labels == QUICKSTART_CLASSES.index("shadow")
        if shadow.any():
            shapes = np.isin(labels, [1, 2, 3])
            near = cv2.dilate(shapes.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            assert near[shadow].all()


def test_rejects_tiny_images(tmp_path):
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path, num_train=1, num_val=1, size=16)
