"""Folder data sets: semantic-segmentation data sets registered from their folder, no Python.

Every sub-folder ``NAME`` of ``$DETECTRON2_DATASETS`` that holds a ``classes.txt`` is registered,
at ``import semask.data``, as ``NAME_sem_seg_train`` and ``NAME_sem_seg_val``::

    NAME/
      classes.txt                                # one class name per line, class id = line - 1
      dataset.yaml                               # optional: ignore_label, reduce_zero_label, colors
      images/{training,validation}/*             # .jpg .jpeg .png .bmp .tif .tiff .webp
      annotations/{training,validation}/*.png    # same file stems, single-channel class ids

Registration reads only ``classes.txt`` and ``dataset.yaml``; images and label maps are paired
by file stem when a split is loaded, and files without a partner are an error naming them.
``dataset.yaml`` keys (all optional):

* ``ignore_label`` (default 255): the stored value of unlabelled pixels;
* ``reduce_zero_label`` (default false): mmseg's convention, 0 is unlabelled and class ``k`` is
  stored as ``k + 1``;
* ``colors``: one ``[R, G, B]`` (0..255) per class, for drawings (default: a fixed palette).

Stored labels are mapped to class ids ``0..K-1`` and 255 (:class:`~semask.data.labels.
LabelMapping`) wherever they are read, for training and evaluation alike; the registered
metadata's ``ignore_label`` is 255, the model's default ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``.
"""

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

import numpy as np
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.colormap import colormap

from ..io import atomic_path
from .image_io import DataError
from .labels import DEFAULT_LABEL_MAPPING, IGNORE_LABEL, LABEL_MAPPING_KEY, LabelMapping

__all__ = [
    "FolderDatasetError",
    "FolderMetadata",
    "load_folder_split",
    "palette",
    "read_folder_metadata",
    "register_folder_dataset",
    "register_folder_datasets",
    "register_sem_seg",
    "write_folder_metadata",
]

logger = logging.getLogger(__name__)

CLASSES_FILE = "classes.txt"
METADATA_FILE = "dataset.yaml"
METADATA_KEYS = ("ignore_label", "reduce_zero_label", "colors")
# Registered name suffix -> split folder under images/ and annotations/.
SPLITS: Dict[str, str] = {"train": "training", "val": "validation"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABEL_SUFFIX = ".png"
# Class ids must stay below the training ignore label.
MAX_CLASSES = IGNORE_LABEL
# Unpaired files named in an error message.
MAX_LISTED_FILES = 5


class FolderDatasetError(DataError):
    """A folder data set cannot be used; the message names the file or folder and the problem."""


@dataclass(frozen=True)
class FolderMetadata:
    """What a folder data set's ``classes.txt`` and ``dataset.yaml`` say."""

    classes: Tuple[str, ...]
    colors: Tuple[Tuple[int, int, int], ...]
    label_mapping: LabelMapping = DEFAULT_LABEL_MAPPING


def palette(num_classes: int) -> List[List[int]]:
    """``num_classes`` distinct RGB colours, deterministic: detectron2's colour map, then seeded
    random colours."""
    colours = list(dict.fromkeys(map(tuple, colormap(rgb=True, maximum=255).round().astype(int))))
    rng = np.random.default_rng(0)
    while len(colours) < num_classes:
        colour = tuple(int(value) for value in rng.integers(0, 256, size=3))
        if colour not in colours:
            colours.append(colour)
    return [[int(value) for value in colour] for colour in colours[:num_classes]]


def read_classes(path: Path) -> Tuple[str, ...]:
    """The class names of ``classes.txt`` at ``path``: one per line, trailing blank lines
    ignored. Raises :class:`FolderDatasetError` naming the file for an empty name in between, a
    repeated name, no class or more than :data:`MAX_CLASSES`."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise FolderDatasetError(f"{path}: cannot be read ({error})") from error
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise FolderDatasetError(f"{path}: no class names (one per line, class id = line - 1)")
    if "" in lines:
        raise FolderDatasetError(f"{path}: line {lines.index('') + 1} is empty (no class name)")
    repeated = sorted({name for name in lines if lines.count(name) > 1})
    if repeated:
        raise FolderDatasetError(f"{path}: class names repeated: {', '.join(repeated)}")
    if len(lines) > MAX_CLASSES:
        raise FolderDatasetError(
            f"{path}: {len(lines)} classes; at most {MAX_CLASSES} (class ids stay below the "
            f"training ignore label {IGNORE_LABEL})"
        )
    return tuple(lines)


def _bad_key(path: Path, key: str, value: Any, allowed: str) -> NoReturn:
    raise FolderDatasetError(f"{path}: key {key!r} = {value!r}: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_colors(path: Path, value: Any, num_classes: int) -> Tuple[Tuple[int, int, int], ...]:
    if not isinstance(value, list) or len(value) != num_classes:
        got = f"{len(value)} entries" if isinstance(value, list) else repr(value)
        raise FolderDatasetError(
            f"{path}: key 'colors' = {got}: must be a list of {num_classes} [R, G, B] (one per "
            "class of classes.txt)"
        )
    for index, colour in enumerate(value):
        if not (
            isinstance(colour, list)
            and len(colour) == 3
            and all(_is_int(c) and 0 <= c <= 255 for c in colour)
        ):
            raise FolderDatasetError(
                f"{path}: key 'colors' entry {index} = {colour!r}: must be [R, G, B] with "
                "values 0..255"
            )
    return tuple(tuple(colour) for colour in value)


def read_metadata_file(path: Path, num_classes: int) -> Dict[str, Any]:
    """The checked keys of ``dataset.yaml`` at ``path`` (those it sets) for ``num_classes``
    classes. Raises :class:`FolderDatasetError` naming the file and the key for an unknown key
    or a bad value."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise FolderDatasetError(f"{path}: cannot be read as YAML ({error})") from error
    content = {} if content is None else content
    if not isinstance(content, dict):
        raise FolderDatasetError(f"{path}: must be a mapping of {list(METADATA_KEYS)}")
    unknown = sorted(str(key) for key in content if key not in METADATA_KEYS)
    if unknown:
        raise FolderDatasetError(
            f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(METADATA_KEYS)})"
        )
    reduce_zero_label = content.get("reduce_zero_label", False)
    if not isinstance(reduce_zero_label, bool):
        _bad_key(path, "reduce_zero_label", reduce_zero_label, "must be true or false")
    if "ignore_label" in content:
        ignore = content["ignore_label"]
        if not _is_int(ignore) or ignore < 0:
            _bad_key(path, "ignore_label", ignore, "must be an integer >= 0")
        first, last = LabelMapping(ignore, reduce_zero_label).stored_class_ids(num_classes)
        if first <= ignore <= last:
            _bad_key(
                path,
                "ignore_label",
                ignore,
                f"is a stored class id ({first}..{last}) of the data set",
            )
    if "colors" in content:
        content["colors"] = _read_colors(path, content["colors"], num_classes)
    return content


def read_folder_metadata(root: os.PathLike) -> FolderMetadata:
    """The metadata of the folder data set at ``root``: its ``classes.txt`` and, if present, its
    ``dataset.yaml``. Reads no image."""
    root = Path(root)
    classes = read_classes(root / CLASSES_FILE)
    metadata_file = root / METADATA_FILE
    content = read_metadata_file(metadata_file, len(classes)) if metadata_file.is_file() else {}
    colors = content.get("colors") or tuple(tuple(c) for c in palette(len(classes)))
    mapping = LabelMapping(
        ignore_value=content.get("ignore_label", IGNORE_LABEL),
        reduce_zero_label=content.get("reduce_zero_label", False),
    )
    return FolderMetadata(classes=classes, colors=colors, label_mapping=mapping)


def write_folder_metadata(root: os.PathLike, metadata: FolderMetadata) -> None:
    """Write ``classes.txt`` and ``dataset.yaml`` (every key) of ``metadata`` into ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    mapping = metadata.label_mapping
    with atomic_path(root / CLASSES_FILE) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in metadata.classes), encoding="utf-8")
    lines = [
        f"ignore_label: {mapping.ignore_value}",
        f"reduce_zero_label: {str(mapping.reduce_zero_label).lower()}",
        "colors:",
        *(
            f"  - [{r}, {g}, {b}]  # {name}"
            for name, (r, g, b) in zip(metadata.classes, metadata.colors)
        ),
    ]
    with atomic_path(root / METADATA_FILE) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _files_by_stem(folder: str, suffixes: Sequence[str]) -> Dict[str, str]:
    if not os.path.isdir(folder):
        raise FolderDatasetError(f"{folder}: folder not found")
    files: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if name.startswith(".") or suffix.lower() not in suffixes:
            continue
        if stem in files:
            raise FolderDatasetError(
                f"{folder}: two files with the stem {stem!r}: {os.path.basename(files[stem])} "
                f"and {name}"
            )
        files[stem] = os.path.join(folder, name)
    return files


def _listed(files: Sequence[str]) -> str:
    more = f", ... ({len(files)} in all)" if len(files) > MAX_LISTED_FILES else ""
    return ", ".join(os.path.basename(f) for f in files[:MAX_LISTED_FILES]) + more


def load_folder_split(
    image_dir: str, label_dir: str, label_mapping: LabelMapping = DEFAULT_LABEL_MAPPING
) -> List[Dict[str, Any]]:
    """Dataset dicts (``file_name``, ``sem_seg_file_name``, ``label_mapping``) of the images of
    ``image_dir`` (suffixes :data:`IMAGE_SUFFIXES`) and the ``.png`` label maps of ``label_dir``,
    paired by file stem, sorted by stem.

    Raises :class:`FolderDatasetError` naming the files of either folder that have no partner in
    the other, and for a missing folder or no image.
    """
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES)
    labels = _files_by_stem(label_dir, (LABEL_SUFFIX,))
    lone_images = [images[stem] for stem in images if stem not in labels]
    lone_labels = [labels[stem] for stem in labels if stem not in images]
    problems = []
    if lone_images:
        problems.append(
            f"{len(lone_images)} image(s) of {image_dir} without a label map in "
            f"{label_dir}: {_listed(lone_images)}"
        )
    if lone_labels:
        problems.append(
            f"{len(lone_labels)} label map(s) of {label_dir} without an image in "
            f"{image_dir}: {_listed(lone_labels)}"
        )
    if problems:
        raise FolderDatasetError(
            "images and label maps do not pair up by file stem: " + "; ".join(problems)
        )
    if not images:
        raise FolderDatasetError(f"{image_dir}: no image ({', '.join(IMAGE_SUFFIXES)})")
    return [
        {
            "file_name": images[stem],
            "sem_seg_file_name": labels[stem],
            LABEL_MAPPING_KEY: label_mapping,
        }
        for stem in sorted(images)
    ]


def register_sem_seg(
    name: str,
    image_dir: str,
    gt_dir: str,
    classes: Sequence[str],
    colours: Sequence[Sequence[int]],
    label_mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
) -> None:
    """Register semantic data set ``name`` of the images of ``image_dir`` and the label maps of
    ``gt_dir`` (:func:`load_folder_split`), stored as ``label_mapping`` says."""
    DatasetCatalog.register(
        name, functools.partial(load_folder_split, str(image_dir), str(gt_dir), label_mapping)
    )
    MetadataCatalog.get(name).set(
        stuff_classes=list(classes),
        stuff_colors=[list(c) for c in colours],
        image_root=str(image_dir),
        sem_seg_root=str(gt_dir),
        evaluator_type="sem_seg",
        ignore_label=IGNORE_LABEL,
        label_mapping=label_mapping,
    )


def split_names(name: str) -> List[str]:
    """The registered names of the folder data set ``name``: ``name_sem_seg_{train,val}``."""
    return [f"{name}_sem_seg_{split}" for split in SPLITS]


def register_folder_dataset(
    name: str, root: os.PathLike, metadata: Optional[FolderMetadata] = None
) -> List[str]:
    """Register ``name_sem_seg_{train,val}`` from the folder data set at ``root``, with
    ``metadata`` or (None) what :func:`read_folder_metadata` reads there; the registered names."""
    root = Path(root)
    metadata = read_folder_metadata(root) if metadata is None else metadata
    for registered, split in zip(split_names(name), SPLITS.values()):
        register_sem_seg(
            registered,
            str(root / "images" / split),
            str(root / "annotations" / split),
            metadata.classes,
            metadata.colors,
            metadata.label_mapping,
        )
    return split_names(name)


def _raise(message: str) -> NoReturn:
    raise FolderDatasetError(message)


def _register_unusable(names: Sequence[str], message: str) -> None:
    """Register ``names`` so that loading them raises ``message`` and config checks report it."""
    for name in names:
        DatasetCatalog.register(name, functools.partial(_raise, message))
        MetadataCatalog.get(name).set(evaluator_type="sem_seg", dataset_error=message)


def register_folder_datasets(root: os.PathLike) -> List[str]:
    """Register every sub-folder of ``root`` that holds a ``classes.txt``
    (:func:`register_folder_dataset`); the names registered.

    A folder whose names are already registered from another folder is left out with a warning.
    A folder with bad metadata is logged as a warning and its names are registered as unusable:
    loading them, or a config that uses them, fails with the problem.
    """
    if not os.path.isdir(root):
        return []
    registered: List[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        folder = Path(entry.path)
        if not entry.is_dir() or not (folder / CLASSES_FILE).is_file():
            continue
        names = split_names(entry.name)
        taken = [name for name in names if name in DatasetCatalog.list()]
        if taken:
            own = str(folder / "images" / SPLITS["train"])
            image_root = MetadataCatalog.get(names[0]).get("image_root")
            if image_root is None or os.path.abspath(image_root) != os.path.abspath(own):
                logger.warning(
                    f"{folder}: not registered as a folder data set, {', '.join(taken)} is "
                    "registered already"
                )
            continue
        try:
            metadata = read_folder_metadata(folder)
        except FolderDatasetError as error:
            logger.warning(f"folder data set {entry.name} cannot be used: {error}")
            _register_unusable(names, str(error))
            continue
        registered += register_folder_dataset(entry.name, folder, metadata)
    return registered
