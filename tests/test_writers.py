"""semask.writers: pictures and label maps written atomically, read back as written."""

import os

import cv2
import numpy as np
import pytest
import torch

from semask.writers import save_image, save_label_png


def test_saved_images_and_labels_read_back(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    save_image(tmp_path / "image.png", image)
    assert np.array_equal(cv2.imread(str(tmp_path / "image.png"))[:, :, ::-1], image)
    labels = torch.randint(0, 150, (6, 7))
    save_label_png(tmp_path / "labels.png", labels)
    read = cv2.imread(str(tmp_path / "labels.png"), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint8 and np.array_equal(read, labels.numpy())
    many = np.array([[0, 300], [1000, 5]])
    save_label_png(tmp_path / "many.png", many)
    read = cv2.imread(str(tmp_path / "many.png"), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16 and np.array_equal(read, many)
    with pytest.raises(ValueError, match="bad.png"):
        save_label_png(tmp_path / "bad.png", np.array([[-1, 0]]))
    with pytest.raises(OSError, match="cannot write .*missing_dir/x.png"):
        save_image(tmp_path / "missing_dir" / "x.png", image)


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "labels.png"
    save_label_png(target, np.array([[1, 2]]))
    before = target.read_bytes()
    monkeypatch.setattr(cv2, "imwrite", lambda path, array: False)
    with pytest.raises(OSError, match="could not write label file .*labels.png"):
        save_label_png(target, np.array([[3, 4]]))
    with pytest.raises(OSError, match="could not write image file .*labels.png"):
        save_image(target, np.zeros((2, 2, 3), dtype=np.uint8))
    assert os.listdir(tmp_path) == ["labels.png"] and target.read_bytes() == before
