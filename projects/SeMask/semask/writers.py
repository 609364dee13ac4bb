"""Image files written atomically (:func:`semask.io.atomic_path`): pictures and label maps."""

import os
from typing import Union

import cv2
import numpy as np
import torch

from .io import atomic_path

PathLike = Union[str, os.PathLike]


def save_image(path: PathLike, image: np.ndarray) -> None:
    """Write an RGB ``image`` [H, W, 3] uint8 to ``path`` (format from the suffix)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(image[:, :, ::-1])):
            raise OSError(f"could not write image file {path}")


def save_label_png(path: PathLike, labels: Union[np.ndarray, torch.Tensor]) -> None:
    """Write a label map [H, W] as a one-channel PNG (8-bit; 16-bit if a label exceeds 255)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError(
            f"labels for {path} must lie in [0, 65535], got {labels.min()}..{labels.max()}"
        )
    dtype = np.uint8 if labels.size == 0 or labels.max() <= 255 else np.uint16
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), labels.astype(dtype)):
            raise OSError(f"could not write label file {path}")
