"""The quick-start data set in a panoptic flavour: the images of :mod:`semask.data.quickstart`,
with every shape its own instance, in the COCO panoptic layout.

* things: ``disc``, ``box`` and ``triangle``, 3 to 6 shapes per image, often several of one class.
  They are placed at random, so they touch and overlap: a later shape is drawn over an earlier
  one, which stays at least half visible. Every shape has its own random colour.
* stuff, one segment per class and image: ``background``; ``stripes`` and ``checker`` (at most
  one blob each, at least half visible); ``shadow``, cast by all the shapes together onto the
  stuff below them. Every pixel belongs to a segment (no void, no crowd).

Contiguous category ids put things first (``PANOPTIC_CLASSES``), so that a thing's contiguous
id indexes ``thing_classes`` as well as ``stuff_classes``; dataset ids are contiguous ids + 1.
Files, per split ``training`` / ``validation`` (:func:`split_layout`)::

    images/SPLIT/*.jpg        panoptic/SPLIT/*.png (segment ids as RGB, panoptic_labels.id_to_rgb)
    panoptic_SPLIT.json       (COCO panoptic: images, annotations with segments_info, categories)
    annotations/SPLIT/*.png   (semantic maps of contiguous ids: semantic_from_segments)
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..io import atomic_open, atomic_path
from .conversion import mask_bbox
from .panoptic_datasets import register_panoptic
from .panoptic_labels import id_to_rgb, semantic_from_segments
from .quickstart import (
    BACKGROUND,
    CHECKER,
    IMAGE_SIZE,
    NUM_TRAIN,
    NUM_VAL,
    QUICKSTART_CLASSES,
    QUICKSTART_COLORS,
    SHADOW,
    SHAPES,
    SPLITS,
    STRIPES,
    background,
    blob_mask,
    random_colour,
    shadow_of,
    shadow_offset,
    shape_mask,
    texture,
)

# Folder of the data set under the data root, and prefix of its registered names.
QUICKSTART_PANOPTIC = "quickstart_panoptic"
PANOPTIC_THINGS: Tuple[str, ...] = ("disc", "box", "triangle")
PANOPTIC_CLASSES: Tuple[str, ...] = PANOPTIC_THINGS + ("background", "stripes", "checker", "shadow")
# COCO panoptic categories: dataset id, name, isthing, colour (that of the semantic flavour).
PANOPTIC_CATEGORIES: Tuple[Dict[str, Any], ...] = tuple(
    {
        "id": contiguous + 1,
        "name": name,
        "isthing": int(name in PANOPTIC_THINGS),
        "color": list(QUICKSTART_COLORS[QUICKSTART_CLASSES.index(name)]),
    }
    for contiguous, name in enumerate(PANOPTIC_CLASSES)
)
# Contiguous panoptic category of each drawing kind (a class id of QUICKSTART_CLASSES).
_CATEGORY_OF_KIND: Dict[int, int] = {
    QUICKSTART_CLASSES.index(name): contiguous for contiguous, name in enumerate(PANOPTIC_CLASSES)
}
# Range of the number of shapes per image (high end excluded); the share of a shape that the
# shapes drawn over it leave visible, at least; tries to place a shape before it is left out.
SHAPES_PER_IMAGE = (3, 7)
MIN_VISIBLE = 0.5
PLACEMENT_TRIES = 10
# Chance that an image holds a stripes blob, and (independently) a checker blob.
BLOB_CHANCE = 0.5


class PanopticSplit(NamedTuple):
    """Where one split of the panoptic quick-start set lies."""

    image_dir: Path
    panoptic_dir: Path
    panoptic_json: Path
    semantic_dir: Path


def split_layout(root: os.PathLike, split: str) -> PanopticSplit:
    """The folders and JSON file of ``split`` (``training`` or ``validation``) under ``root``."""
    root = Path(root)
    return PanopticSplit(
        image_dir=root / "images" / split,
        panoptic_dir=root / "panoptic" / split,
        panoptic_json=root / f"panoptic_{split}.json",
        semantic_dir=root / "annotations" / split,
    )


def _place_shapes(
    rng: np.random.Generator, size: int, below: List[np.ndarray]
) -> List[Tuple[int, np.ndarray]]:
    """(kind, bool [size, size] mask) of the shapes of one image, in drawing order.

    A shape is kept only if the blobs ``below`` and every shape drawn before it stay at least
    ``MIN_VISIBLE`` visible.
    """
    shapes: List[Tuple[int, np.ndarray]] = []
    drawn = list(below)
    visible = list(below)
    for kind in rng.choice(SHAPES, size=int(rng.integers(*SHAPES_PER_IMAGE))):
        for _ in range(PLACEMENT_TRIES):
            mask = shape_mask(rng, kind, size)
            if all(
                (seen & ~mask).sum() >= MIN_VISIBLE * full.sum()
                for full, seen in zip(drawn, visible)
            ):
                break
        else:
            continue
        drawn.append(mask)
        visible = [seen & ~mask for seen in visible] + [mask]
        shapes.append((int(kind), mask))
    return shapes


def make_panoptic_sample(
    rng: np.random.Generator, size: int
) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
    """One image and its panoptic label.

    Returns:
        the image uint8 [size, size, 3] RGB; segment ids int32 [size, size], numbered from 1
        with no void; ``segments_info`` (``id``, contiguous ``category_id``, ``isthing``), one
        entry per segment id.
    """
    image, base = background(rng, size)
    layers: List[Tuple[int, np.ndarray]] = [(BACKGROUND, np.ones((size, size), bool))]
    for kind in (STRIPES, CHECKER):
        if rng.random() < BLOB_CHANCE:
            mask = blob_mask(rng, size)
            image[mask] = texture(rng, kind, size, base)[mask]
            layers.append((kind, mask))
    shapes = _place_shapes(rng, size, [mask for _, mask in layers[1:]])
    things = np.zeros((size, size), bool)
    for _, mask in shapes:
        things |= mask
    shadow = shadow_of(things, shadow_offset(size))
    image[shadow] *= 0.55
    layers.append((SHADOW, shadow))
    for _, mask in shapes:
        fill = random_colour(rng, base)
        image[mask] = fill + rng.normal(0, 6, size=(int(mask.sum()), 3))
    layers.extend(shapes)
    image += rng.normal(0, 5, size=image.shape)

    owner = np.zeros((size, size), np.int64)  # the layer drawn last at each pixel
    for index, (_, mask) in enumerate(layers):
        owner[mask] = index
    segment_ids = np.zeros((size, size), np.int32)
    segments_info: List[Dict[str, Any]] = []
    for index, (kind, _) in enumerate(layers):
        region = owner == index
        if region.any():
            segment_id = len(segments_info) + 1
            segment_ids[region] = segment_id
            category = _CATEGORY_OF_KIND[kind]
            segments_info.append(
                {"id": segment_id, "category_id": category, "isthing": kind in SHAPES}
            )
    return np.clip(image, 0, 255).astype(np.uint8), segment_ids, segments_info


def segment_annotation(segment_ids: np.ndarray, segment: Dict[str, Any]) -> Dict[str, Any]:
    """The COCO panoptic ``segments_info`` entry of ``segment`` (contiguous ``category_id``):
    dataset ``category_id``, ``iscrowd`` 0, ``area`` in pixels and ``bbox`` [x, y, w, h] of its
    pixels in ``segment_ids`` [H, W]."""
    mask = segment_ids == segment["id"]
    return {
        "id": int(segment["id"]),
        "category_id": PANOPTIC_CATEGORIES[segment["category_id"]]["id"],
        "iscrowd": 0,
        "area": int(mask.sum()),
        "bbox": mask_bbox(mask),
    }


def generate_panoptic(
    root: os.PathLike,
    num_train: int = NUM_TRAIN,
    num_val: int = NUM_VAL,
    size: int = IMAGE_SIZE,
    seed: int = 0,
) -> Path:
    """Write the panoptic quick-start set under ``root`` (layout in the module docstring);
    return ``root``.

    Each image is drawn from its own generator seeded by (seed, split, index), so the output
    depends only on the arguments.
    """
    if size < 32:
        raise ValueError(f"quick-start image size must be at least 32 pixels, got size={size}")
    counts = {"training": num_train, "validation": num_val}
    with tqdm(total=num_train + num_val, desc="panoptic quick-start data", unit="image") as bar:
        for split_index, (split, count) in enumerate(counts.items()):
            layout = split_layout(root, split)
            for folder in (layout.image_dir, layout.panoptic_dir, layout.semantic_dir):
                folder.mkdir(parents=True, exist_ok=True)
            images, annotations = [], []
            for index in range(count):
                rng = np.random.default_rng([seed, split_index, index])
                image, segment_ids, segments_info = make_panoptic_sample(rng, size)
                name = f"{QUICKSTART_PANOPTIC}_{SPLITS[split]}_{index:05d}"
                semantic = semantic_from_segments(segment_ids, segments_info)
                with atomic_path(layout.image_dir / f"{name}.jpg") as tmp:
                    cv2.imwrite(str(tmp), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                with atomic_path(layout.panoptic_dir / f"{name}.png") as tmp:
                    cv2.imwrite(str(tmp), id_to_rgb(segment_ids)[..., ::-1])
                with atomic_path(layout.semantic_dir / f"{name}.png") as tmp:
                    cv2.imwrite(str(tmp), semantic)
                images.append(
                    {"id": index, "file_name": f"{name}.jpg", "height": size, "width": size}
                )
                annotations.append(
                    {
                        "image_id": index,
                        "file_name": f"{name}.png",
                        "segments_info": [
                            segment_annotation(segment_ids, segment) for segment in segments_info
                        ],
                    }
                )
                bar.update()
            content = {
                "images": images,
                "annotations": annotations,
                "categories": list(PANOPTIC_CATEGORIES),
            }
            with atomic_open(layout.panoptic_json) as file:
                json.dump(content, file)
    return Path(root)


def is_panoptic_generated(
    root: os.PathLike, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL
) -> bool:
    """True if ``root`` holds both JSON files and as many images, panoptic PNGs and semantic
    maps per split as :func:`generate_panoptic` writes."""
    for split, count in (("training", num_train), ("validation", num_val)):
        layout = split_layout(root, split)
        if not layout.panoptic_json.is_file():
            return False
        files = (
            (layout.image_dir, "jpg"),
            (layout.panoptic_dir, "png"),
            (layout.semantic_dir, "png"),
        )
        for folder, ext in files:
            if len(list(folder.glob(f"*.{ext}"))) != count:
                return False
    return True


def register_quickstart_panoptic(root: str) -> None:
    """Register ``quickstart_panoptic_{train,val}`` from ``root/quickstart_panoptic``
    (:func:`~semask.data.panoptic_datasets.register_panoptic`, with semantic maps); nothing is
    read until a data set is used."""
    for split, short in SPLITS.items():
        layout = split_layout(os.path.join(root, QUICKSTART_PANOPTIC), split)
        register_panoptic(
            f"{QUICKSTART_PANOPTIC}_{short}",
            image_root=str(layout.image_dir),
            panoptic_root=str(layout.panoptic_dir),
            panoptic_json=str(layout.panoptic_json),
            sem_seg_root=str(layout.semantic_dir),
            categories=PANOPTIC_CATEGORIES,
        )
