"""A small, deterministic semantic-segmentation data set that a SeMask model can learn on a CPU.

Every image is a textured background with a few objects painted over it. Colours are drawn at
random for every object and every background, so no class can be recognised by its colour:

* ``disc``, ``box`` and ``triangle`` are flat-coloured shapes, told apart by their outline;
* ``stripes`` and ``checker`` are irregular blobs, told apart by their texture;
* ``shadow`` is the background darkened beside a shape, told apart by its context (it is only
  ever found next to a shape, offset the same way in every image);
* ``background`` is everything else.

The files are a folder data set (:mod:`semask.data.folder`): ``classes.txt``, ``dataset.yaml``
(colours), ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png``
(class ids 0..6, already 0-based).

The drawing functions (:func:`background`, :func:`shape_mask`, :func:`blob_mask`,
:func:`texture`, :func:`shadow_of`) also draw the panoptic flavour
(:mod:`semask.data.quickstart_panoptic`); a ``kind`` is a class id of ``QUICKSTART_CLASSES``.
"""

import os
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..io import atomic_path
from .folder import CLASSES_FILE, METADATA_FILE, FolderMetadata, write_folder_metadata

QUICKSTART_CLASSES: Tuple[str, ...] = (
    "background",
    "disc",
    "box",
    "triangle",
    "stripes",
    "checker",
    "shadow",
)
QUICKSTART_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (120, 120, 120),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (70, 30, 120),
)
SPLITS: Dict[str, str] = {"training": "train", "validation": "val"}
# Default size of the data set: images per split and image side in pixels.
NUM_TRAIN, NUM_VAL, IMAGE_SIZE = 800, 100, 96
BACKGROUND, DISC, BOX, TRIANGLE, STRIPES, CHECKER, SHADOW = range(7)
SHAPES = (DISC, BOX, TRIANGLE)
OBJECT_CLASSES = (DISC, BOX, TRIANGLE, STRIPES, CHECKER)


def random_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A random RGB colour at least 80 (L2) from ``avoid``, as float32 [3]."""
    while True:
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        if np.linalg.norm(colour - avoid) >= 80:
            return colour


def background(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A smooth random-coloured background: (image float32 [size, size, 3], mean colour [3])."""
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    coarse = rng.normal(0, 18, size=(4, 4, 3)).astype(np.float32)
    variation = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return base + variation, base


def shape_mask(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """A bool [size, size] mask of one disc, box or triangle at a random place and scale."""
    mask = np.zeros((size, size), np.uint8)
    extent = rng.uniform(0.12, 0.22) * size
    cx, cy = rng.uniform(extent, size - extent, size=2)
    if kind == DISC:
        cv2.circle(mask, (int(cx), int(cy)), int(extent), 1, thickness=-1)
    elif kind == BOX:
        half_w, half_h = extent * rng.uniform(0.7, 1.0, size=2)
        corners = [(cx - half_w, cy - half_h), (cx + half_w, cy + half_h)]
        (x0, y0), (x1, y1) = np.round(corners).astype(int)
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, thickness=-1)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        corners = [
            (cx + 1.2 * extent * np.cos(a), cy + 1.2 * extent * np.sin(a))
            for a in angle + np.array([0.0, 2.0, 4.0]) * np.pi / 3
        ]
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    return mask.astype(bool)


def blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bool [size, size] mask of an irregular blob (a few overlapping ellipses)."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.25 * size, 0.75 * size, size=2)
    for _ in range(3):
        centre = (int(cx + rng.normal(0, 0.06 * size)), int(cy + rng.normal(0, 0.06 * size)))
        axes = tuple(int(a) for a in rng.uniform(0.08, 0.18, size=2) * size)
        cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def texture(rng: np.random.Generator, kind: int, size: int, avoid: np.ndarray) -> np.ndarray:
    """Float32 [size, size, 3] stripes or checkerboard in two random colours."""
    first = random_colour(rng, avoid)
    second = random_colour(rng, first)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(0.08, 0.125) * size
    if kind == STRIPES:
        angle = rng.uniform(0, np.pi)
        pattern = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period) > 0
    else:
        pattern = ((xs // (period / 2)) + (ys // (period / 2))) % 2 == 0
    return np.where(pattern[..., None], first, second)


def shadow_offset(size: int) -> int:
    """How far (pixels, down and right) shapes cast their shadow in a ``size`` image."""
    return max(2, size // 16)


def shadow_of(mask: np.ndarray, offset: int) -> np.ndarray:
    """Bool mask of the shadow ``mask`` casts ``offset`` pixels down and to the right."""
    shadow = np.zeros_like(mask)
    shadow[offset:, offset:] = mask[:-offset, :-offset]
    return shadow & ~mask


def make_sample(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """One image and its labels: (uint8 [size, size, 3] RGB, uint8 [size, size] class ids).

    Objects (with their shadows) do not overlap: an object that finds no free place in a few
    tries is left out.
    """
    image, base = background(rng, size)
    labels = np.full((size, size), BACKGROUND, np.uint8)
    offset = shadow_offset(size)
    occupied = np.zeros((size, size), bool)
    for kind in rng.choice(OBJECT_CLASSES, size=int(rng.integers(2, 5))):
        for _ in range(10):
            is_shape = kind in SHAPES
            mask = shape_mask(rng, kind, size) if is_shape else blob_mask(rng, size)
            shadow = shadow_of(mask, offset) if is_shape else np.zeros_like(mask)
            if not ((mask | shadow) & occupied).any():
                break
        else:
            continue
        occupied |= cv2.dilate((mask | shadow).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if is_shape:
            image[shadow] *= 0.55
            labels[shadow] = SHADOW
            fill = random_colour(rng, base)
            image[mask] = fill + rng.normal(0, 6, size=(int(mask.sum()), 3))
        else:
            image[mask] = texture(rng, kind, size, base)[mask]
        labels[mask] = kind
    image += rng.normal(0, 5, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def generate(
    root: os.PathLike,
    num_train: int = NUM_TRAIN,
    num_val: int = NUM_VAL,
    size: int = IMAGE_SIZE,
    seed: int = 0,
) -> Path:
    """Write the data set under ``root`` in the ADE20K layout; return ``root``.

    Each image is drawn from its own generator seeded by (seed, split, index), so the output
    depends only on the arguments.
    """
    if size < 32:
        raise ValueError(f"quick-start image size must be at least 32 pixels, got size={size}")
    root = Path(root)
    write_folder_metadata(root, FolderMetadata(QUICKSTART_CLASSES, QUICKSTART_COLORS))
    counts = {"training": num_train, "validation": num_val}
    with tqdm(total=num_train + num_val, desc="quick-start data", unit="image") as progress:
        for split_index, (split, count) in enumerate(counts.items()):
            image_dir = root / "images" / split
            label_dir = root / "annotations" / split
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                rng = np.random.default_rng([seed, split_index, index])
                image, labels = make_sample(rng, size)
                name = f"quickstart_{SPLITS[split]}_{index:05d}"
                with atomic_path(image_dir / f"{name}.jpg") as tmp:
                    cv2.imwrite(str(tmp), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                with atomic_path(label_dir / f"{name}.png") as tmp:
                    cv2.imwrite(str(tmp), labels)
                progress.update()
    return root


def is_generated(root: os.PathLike, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL) -> bool:
    """True if ``root`` holds the metadata files and as many images and labels per split as
    :func:`generate` writes."""
    root = Path(root)
    if not all((root / name).is_file() for name in (CLASSES_FILE, METADATA_FILE)):
        return False
    for split, count in (("training", num_train), ("validation", num_val)):
        for folder, ext in (("images", "jpg"), ("annotations", "png")):
            if len(list((root / folder / split).glob(f"*.{ext}"))) != count:
                return False
    return True
