"""Panoptic data sets in the COCO panoptic format, and the built-in panoptic and instance sets.

:func:`register_panoptic` registers any data set of a COCO panoptic JSON, its panoptic PNGs and
images (and optionally semantic PNGs); the JSON is read when the data set is first used.
Categories get contiguous ids ``0..K-1`` in the order of their dataset ids, things and stuff
together, and the metadata names all K classes in ``stuff_classes`` (Mask2Former's convention),
the things among them in ``thing_classes``.

:func:`register_all_panoptic` registers, under a data root (layouts in ``datasets/README.md``):

* ``coco_2017_{train,val}_panoptic_with_sem_seg``: COCO panoptic 2017, 133 classes (80 things,
  53 stuff), with the semantic PNGs of ``datasets/prepare_coco_semantic_annos_from_panoptic.py``;
* detectron2's own ``coco_2017_{train,val}_panoptic`` get the same class metadata (detectron2
  names all 133 classes things);
* ``ade20k_panoptic_{train,val}``: ADE20K, 150 classes (100 things, 50 stuff), with the semantic
  PNGs of ``datasets/prepare_ade20k.py``;
* ``ade20k_instance_{train,val}``: ADE20K's 100 thing classes, a COCO instance JSON.
"""

import functools
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .ade20k_categories import (
    ADE20K_COLORS,
    ADE20K_INSTANCE_NAMES,
    ADE20K_THING_IDS,
    ade20k_panoptic_categories,
)
from .image_io import DataError

__all__ = [
    "ade20k_instance_metadata",
    "load_panoptic_json",
    "panoptic_annotations",
    "panoptic_metadata",
    "register_all_panoptic",
    "register_panoptic",
]

logger = logging.getLogger(__name__)

CATEGORY_KEYS = ("id", "name", "isthing", "color")
ANNOTATION_KEYS = ("image_id", "file_name", "segments_info")
IMAGE_KEYS = ("id", "file_name", "height", "width")
SEGMENT_KEYS = ("id", "category_id", "iscrowd", "area", "bbox")
# Semantic maps are uint8 with 255 for ignored pixels.
MAX_CATEGORIES = 255
# Missing files named in an error message.
MAX_LISTED_FILES = 5
COCO_SPLITS = ("train", "val")
# Registered name suffix -> ADE20K's split folder.
ADE20K_SPLITS = {"train": "training", "val": "validation"}
ADE20K_ROOT = "ADEChallengeData2016"


def _sorted_categories(categories: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """``categories`` sorted by dataset id; raises :class:`DataError` for a category without one
    of :data:`CATEGORY_KEYS`, a repeated id, none or more than :data:`MAX_CATEGORIES`."""
    for index, category in enumerate(categories):
        missing = [key for key in CATEGORY_KEYS if key not in category]
        if missing:
            raise DataError(f"category {index} ({dict(category)}) has no {', '.join(missing)}")
    ids = [category["id"] for category in categories]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise DataError(f"category ids repeated: {repeated}")
    if not 0 < len(ids) <= MAX_CATEGORIES:
        raise DataError(f"{len(ids)} categories; a panoptic data set has 1..{MAX_CATEGORIES}")
    return sorted(categories, key=lambda category: category["id"])


def panoptic_metadata(categories: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The class metadata of a panoptic data set of COCO-style ``categories`` (``id``, ``name``,
    ``isthing``, ``color``; any order): contiguous ids follow the dataset ids; ``stuff_*`` list
    all classes, ``thing_*`` the things; ``stuff_dataset_id_to_contiguous_id`` maps all ids."""
    ordered = _sorted_categories(categories)
    things = [(i, c) for i, c in enumerate(ordered) if c["isthing"]]
    return {
        "thing_classes": [c["name"] for _, c in things],
        "thing_colors": [list(c["color"]) for _, c in things],
        "stuff_classes": [c["name"] for c in ordered],
        "stuff_colors": [list(c["color"]) for c in ordered],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in things},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(ordered)},
    }


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except FileNotFoundError as error:
        raise DataError(f"{path}: panoptic JSON not found") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot be read as JSON ({error})") from error
    if not isinstance(content, dict) or any(
        not isinstance(content.get(key), list) for key in ("images", "annotations")
    ):
        raise DataError(f"{path}: not a COCO panoptic JSON (no 'images' and 'annotations' lists)")
    return content


def _missing_keys(entry: Any, keys: Sequence[str]) -> List[str]:
    if not isinstance(entry, dict):
        return list(keys)
    return [key for key in keys if key not in entry]


def _contiguous_segments(
    segments: Sequence[Mapping[str, Any]],
    metadata: Mapping[str, Any],
    where: str,
) -> List[Dict[str, Any]]:
    """Copies of ``segments`` with contiguous ``category_id`` and ``isthing``."""
    all_ids = metadata["stuff_dataset_id_to_contiguous_id"]
    thing_ids = metadata["thing_dataset_id_to_contiguous_id"]
    if not isinstance(segments, list):
        raise DataError(f"{where}: 'segments_info' is {type(segments).__name__}, not a list")
    converted = []
    for segment in segments:
        missing = _missing_keys(segment, SEGMENT_KEYS)
        if missing:
            raise DataError(f"{where}: a segment has no {', '.join(missing)}: {segment}")
        dataset_id = segment["category_id"]
        if dataset_id not in all_ids:
            raise DataError(
                f"{where}: segment {segment['id']} has category_id {dataset_id}, not one of the "
                f"{len(all_ids)} categories (ids {min(all_ids)}..{max(all_ids)})"
            )
        converted.append(
            {**segment, "category_id": all_ids[dataset_id], "isthing": dataset_id in thing_ids}
        )
    return converted


def panoptic_annotations(
    panoptic_json: str, categories: Sequence[Mapping[str, Any]]
) -> List[Dict[str, Any]]:
    """The annotations of a COCO panoptic JSON, joined with their images: ``file_name`` (the
    image's, relative), ``pan_seg_file_name`` (relative), ``image_id`` (as the JSON has it),
    ``height``, ``width`` and ``segments_info`` with contiguous ``category_id`` and ``isthing``.

    Raises :class:`DataError` naming the JSON for a file that cannot be read, an entry without a
    required key, an annotation whose image is not listed, or an unknown ``category_id``.
    """
    metadata = panoptic_metadata(categories)
    content = _read_json(panoptic_json)
    images: Dict[Any, Mapping[str, Any]] = {}
    for index, image in enumerate(content["images"]):
        missing = _missing_keys(image, IMAGE_KEYS)
        if missing:
            raise DataError(f"{panoptic_json}: images[{index}] has no {', '.join(missing)}")
        images[image["id"]] = image
    records = []
    for index, annotation in enumerate(content["annotations"]):
        missing = _missing_keys(annotation, ANNOTATION_KEYS)
        if missing:
            raise DataError(f"{panoptic_json}: annotations[{index}] has no {', '.join(missing)}")
        image = images.get(annotation["image_id"])
        if image is None:
            raise DataError(
                f"{panoptic_json}: annotations[{index}] ({annotation['file_name']}) has "
                f"image_id {annotation['image_id']!r}, which no entry of 'images' has"
            )
        where = f"{panoptic_json}: annotation of {annotation['file_name']}"
        records.append(
            {
                "file_name": image["file_name"],
                "image_id": annotation["image_id"],
                "height": image["height"],
                "width": image["width"],
                "pan_seg_file_name": annotation["file_name"],
                "segments_info": _contiguous_segments(annotation["segments_info"], metadata, where),
            }
        )
    if not records:
        raise DataError(f"{panoptic_json}: no annotation")
    return records


def _check_files_exist(paths: Sequence[str], kind: str, panoptic_json: str) -> None:
    """Raise :class:`DataError` naming the folder and the files of ``paths`` that do not exist
    (one listing per folder, not one query per file)."""
    listings: Dict[str, set] = {}
    missing = []
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in listings:
            if not os.path.isdir(folder):
                raise DataError(f"{folder}: folder of the {kind}s of {panoptic_json} not found")
            listings[folder] = set(os.listdir(folder))
        if name not in listings[folder]:
            missing.append(path)
    if missing:
        listed = ", ".join(os.path.basename(p) for p in missing[:MAX_LISTED_FILES])
        more = f", ... ({len(missing)} in all)" if len(missing) > MAX_LISTED_FILES else ""
        raise DataError(
            f"{os.path.dirname(missing[0])}: {len(missing)} {kind}(s) of {panoptic_json} not "
            f"found: {listed}{more}"
        )


def load_panoptic_json(
    panoptic_json: str,
    image_root: str,
    panoptic_root: str,
    sem_seg_root: Optional[str],
    categories: Sequence[Mapping[str, Any]],
) -> List[Dict[str, Any]]:
    """Dataset dicts of a COCO panoptic data set (:func:`panoptic_annotations` with paths under
    the roots), with ``sem_seg_file_name`` (the panoptic PNG's name under ``sem_seg_root``) when
    ``sem_seg_root`` is given. Raises :class:`DataError` naming the folder and files that are
    missing."""
    records = panoptic_annotations(panoptic_json, categories)
    roots = {"file_name": image_root, "pan_seg_file_name": panoptic_root}
    for record in records:
        if sem_seg_root is not None:
            record["sem_seg_file_name"] = os.path.join(sem_seg_root, record["pan_seg_file_name"])
        for key, root in roots.items():
            record[key] = os.path.join(root, record[key])
    kinds = {"file_name": "image", "pan_seg_file_name": "panoptic PNG"}
    if sem_seg_root is not None:
        kinds["sem_seg_file_name"] = "semantic PNG"
    for key, kind in kinds.items():
        _check_files_exist([record[key] for record in records], kind, panoptic_json)
    logger.info(f"Loaded {len(records)} images in COCO panoptic format from {panoptic_json}")
    return records


def register_panoptic(
    name: str,
    *,
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    sem_seg_root: Optional[str],
    categories: Sequence[Mapping[str, Any]],
    evaluator_type: str = "coco_panoptic_seg",
    ignore_label: int = 255,
    label_divisor: int = 1000,
) -> None:
    """Register panoptic data set ``name`` (:func:`load_panoptic_json`, read when first used)
    with :func:`panoptic_metadata` of ``categories`` and its paths in the metadata."""
    metadata = panoptic_metadata(categories)
    DatasetCatalog.register(
        name,
        functools.partial(
            load_panoptic_json,
            panoptic_json,
            image_root,
            panoptic_root,
            sem_seg_root,
            [dict(category) for category in categories],
        ),
    )
    paths = {"sem_seg_root": sem_seg_root} if sem_seg_root is not None else {}
    MetadataCatalog.get(name).set(
        image_root=image_root,
        panoptic_root=panoptic_root,
        panoptic_json=panoptic_json,
        evaluator_type=evaluator_type,
        ignore_label=ignore_label,
        label_divisor=label_divisor,
        **paths,
        **metadata,
    )


def _replace_metadata(name: str, values: Mapping[str, Any]) -> None:
    """Set ``values`` in ``name``'s metadata, replacing the values it has."""
    metadata = MetadataCatalog.get(name)
    for key in values:
        if hasattr(metadata, key):
            delattr(metadata, key)
    metadata.set(**values)


def register_coco_panoptic(root: str) -> None:
    """``coco_2017_{train,val}_panoptic_with_sem_seg`` under ``root/coco``, and the class
    metadata of detectron2's ``coco_2017_{train,val}_panoptic``."""
    coco = os.path.join(root, "coco")
    for split in COCO_SPLITS:
        name = f"coco_2017_{split}_panoptic"
        register_panoptic(
            f"{name}_with_sem_seg",
            image_root=os.path.join(coco, f"{split}2017"),
            panoptic_root=os.path.join(coco, f"panoptic_{split}2017"),
            panoptic_json=os.path.join(coco, "annotations", f"panoptic_{split}2017.json"),
            sem_seg_root=os.path.join(coco, f"panoptic_semseg_{split}2017"),
            categories=COCO_CATEGORIES,
            evaluator_type="coco_panoptic_seg",
        )
        instances_json = os.path.join(coco, "annotations", f"instances_{split}2017.json")
        MetadataCatalog.get(f"{name}_with_sem_seg").set(json_file=instances_json)
        _replace_metadata(name, panoptic_metadata(COCO_CATEGORIES))


def ade20k_instance_metadata() -> Dict[str, Any]:
    """The class metadata of ``ade20k_instance_*``: the 100 thing classes, contiguous in the
    order of their dataset ids."""
    return {
        "thing_classes": list(ADE20K_INSTANCE_NAMES),
        "thing_colors": [list(ADE20K_COLORS[i]) for i in ADE20K_THING_IDS],
        "thing_dataset_id_to_contiguous_id": {i: k for k, i in enumerate(ADE20K_THING_IDS)},
    }


def register_ade20k_panoptic(root: str) -> None:
    """``ade20k_panoptic_{train,val}`` and ``ade20k_instance_{train,val}`` under
    ``root/ADEChallengeData2016``."""
    base = os.path.join(root, ADE20K_ROOT)
    for split, folder in ADE20K_SPLITS.items():
        image_root = os.path.join(base, "images", folder)
        instances_json = os.path.join(base, f"ade20k_instance_{split}.json")
        register_panoptic(
            f"ade20k_panoptic_{split}",
            image_root=image_root,
            panoptic_root=os.path.join(base, f"ade20k_panoptic_{split}"),
            panoptic_json=os.path.join(base, f"ade20k_panoptic_{split}.json"),
            sem_seg_root=os.path.join(base, "annotations_detectron2", folder),
            categories=ade20k_panoptic_categories(),
            evaluator_type="ade20k_panoptic_seg",
        )
        MetadataCatalog.get(f"ade20k_panoptic_{split}").set(json_file=instances_json)
        register_coco_instances(
            f"ade20k_instance_{split}", ade20k_instance_metadata(), instances_json, image_root
        )


def register_all_panoptic(root: str) -> None:
    """Register the built-in panoptic and instance data sets under ``root``."""
    register_coco_panoptic(root)
    register_ade20k_panoptic(root)
