"""ADE20K's SceneParsing annotations and its instance annotations release, read for the panoptic
and instance preparation scripts (``datasets/prepare_ade20k_{pan,ins}_seg.py``)::

    ADEChallengeData2016/
      images/{training,validation}/*.jpg
      annotations/{training,validation}/*.png           # uint8: 0 other, 1..150 = dataset id + 1
      annotations_instance/{training,validation}/*.png  # RGB: R instance class 1..100 (0 none),
                                                        # G instance id (0 none), B unused

The encoding and the instance class -> dataset id mapping (:data:`ADE20K_THING_IDS`) are those of
Mask2Former's preparation scripts. Images are paired with annotations by file stem.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from PIL import Image

from .ade20k_categories import ADE20K_THING_IDS
from .image_io import DataError

__all__ = [
    "ADE20KSample",
    "image_entry",
    "read_instances",
    "read_semantic",
    "require_instance_annotations",
    "split_samples",
]

# Value of "other" (no class) in the semantic maps read by read_semantic.
OTHER = 255
NUM_SEMANTIC_CLASSES = 150
_THING_IDS = np.array(ADE20K_THING_IDS, dtype=np.int64)


@dataclass(frozen=True)
class ADE20KSample:
    """One image of a split and its annotation files (which may be missing)."""

    image_id: str
    image_file: Path
    semantic_file: Path
    instance_file: Path


def require_instance_annotations(base: Path) -> None:
    """Raise FileNotFoundError, saying what to extract, if ``base`` lacks the instance
    annotations release."""
    folder = Path(base) / "annotations_instance"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} not found: extract ADE20K's instance annotations (annotations_instance.tar"
            f" of the SceneParsing instance task) in {base}"
        )


def split_samples(base: Path, folder: str) -> List[ADE20KSample]:
    """The samples of the ``*.jpg`` images of ``base/images/folder``, sorted by file stem.
    Raises FileNotFoundError naming the folder if it does not exist or holds no image."""
    image_dir = Path(base) / "images" / folder
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"{image_dir} not found: unzip ADEChallengeData2016.zip in {Path(base).parent}"
        )
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"{image_dir}: no *.jpg image")
    return [
        ADE20KSample(
            image_id=path.stem,
            image_file=path,
            semantic_file=Path(base) / "annotations" / folder / f"{path.stem}.png",
            instance_file=Path(base) / "annotations_instance" / folder / f"{path.stem}.png",
        )
        for path in images
    ]


def image_entry(sample: ADE20KSample) -> Dict[str, Any]:
    """The COCO ``images`` entry of ``sample``: ``id`` (the file stem), ``file_name``,
    ``height``, ``width`` (of the stored pixels, as the annotations are)."""
    with Image.open(sample.image_file) as image:
        width, height = image.size
    return {
        "id": sample.image_id,
        "file_name": sample.image_file.name,
        "height": height,
        "width": width,
    }


def _read_png(path: Path, shape: Tuple[int, int], kind: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: {kind} not found")
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.dtype != np.uint8 or array.shape[:2] != tuple(shape):
        raise DataError(
            f"{path}: {kind} is {array.dtype} of shape {array.shape}; expected uint8 of the "
            f"image's size {tuple(shape)}"
        )
    return array


def read_semantic(sample: ADE20KSample, shape: Tuple[int, int]) -> np.ndarray:
    """Dataset ids uint8 [H, W] of ``sample``'s semantic map (0..149; :data:`OTHER` for 0)."""
    label = _read_png(sample.semantic_file, shape, "semantic annotation")
    if label.ndim != 2 or label.max(initial=0) > NUM_SEMANTIC_CLASSES:
        raise DataError(
            f"{sample.semantic_file}: semantic annotation must be one channel of 0..150, got "
            f"shape {label.shape} with values up to {label.max()}"
        )
    return label - np.uint8(1)


def read_instances(sample: ADE20KSample, shape: Tuple[int, int]) -> List[Tuple[int, np.ndarray]]:
    """``(dataset id, bool mask [H, W])`` of each instance of ``sample``'s instance PNG, in
    increasing instance id. Raises :class:`DataError` naming the file for an instance of more
    than one class or of a class outside 1..100."""
    path = sample.instance_file
    encoded = _read_png(path, shape, "instance annotation")
    if encoded.ndim != 3 or encoded.shape[2] < 3:
        raise DataError(f"{path}: instance annotation must be RGB, got shape {encoded.shape}")
    classes, instance_ids = encoded[..., 0], encoded[..., 1]
    instances = []
    for instance_id in np.unique(instance_ids):
        if instance_id == 0:
            continue
        mask = instance_ids == instance_id
        found = np.unique(classes[mask])
        if len(found) != 1 or not 1 <= found[0] <= len(_THING_IDS):
            raise DataError(
                f"{path}: instance {instance_id} has instance class(es) {found.tolist()}; one "
                f"class of 1..{len(_THING_IDS)} expected (red channel)"
            )
        instances.append((int(_THING_IDS[found[0] - 1]), mask))
    return instances
