"""Prepare ADE20K panoptic segmentation (``ade20k_panoptic_{train,val}``) for detectron2.

Reads ``$DETECTRON2_DATASETS/ADEChallengeData2016/`` (``ADEChallengeData2016.zip`` and its
instance annotations release, ``annotations_instance/``; encoding in
:mod:`semask.data.ade20k_annotations`) and writes, in the layout of Mask2Former's script of the
same name, ``ade20k_panoptic_{train,val}/*.png`` (COCO panoptic PNGs) and
``ade20k_panoptic_{train,val}.json`` (150 categories, dataset ids 0..149, 100 things).

Each image gets one segment per stuff class of its semantic map and one per instance of its
instance PNG, the instances drawn over the stuff where they overlap. "Other" and thing-class
pixels outside every instance are void (segment id 0); no segment is crowd. Areas and boxes are
those of the written PNG: a stuff segment that the instances cover entirely is left out.

    python datasets/prepare_ade20k_pan_seg.py [--root DIR] [--workers N]
"""

import functools
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from semask.data.ade20k_annotations import (
    OTHER,
    ADE20KSample,
    image_entry,
    read_instances,
    read_semantic,
    require_instance_annotations,
    split_samples,
)
from semask.data.ade20k_categories import ADE20K_THING_IDS, ade20k_panoptic_categories
from semask.data.conversion import mask_bbox, progress_map, run_preparation, write_json
from semask.data.panoptic_datasets import ADE20K_ROOT, ADE20K_SPLITS
from semask.data.panoptic_labels import id_to_rgb
from semask.io import atomic_path


def panoptic_label(
    semantic: np.ndarray, instances: Sequence[Tuple[int, np.ndarray]]
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """The panoptic label of an image.

    Args:
        semantic: uint8 [H, W] dataset ids, :data:`OTHER` for no class.
        instances: ``(dataset id, bool mask [H, W])`` of each instance.
    Returns:
        segment ids int64 [H, W] (1, 2, ... in the order stuff by class id, then instances; 0
        void) and the ``segments_info`` of the segments left in it (``id``, dataset
        ``category_id``, ``area``, ``bbox``, ``iscrowd`` 0).
    """
    things = set(ADE20K_THING_IDS)
    ids = np.zeros(semantic.shape, dtype=np.int64)
    categories: List[int] = []
    for category in np.unique(semantic).tolist():
        if category != OTHER and category not in things:
            categories.append(category)
            ids[semantic == category] = len(categories)
    for category, mask in instances:
        categories.append(category)
        ids[mask] = len(categories)
    segments = []
    for segment_id, category in enumerate(categories, start=1):
        mask = ids == segment_id
        if mask.any():
            segments.append(
                {
                    "id": segment_id,
                    "category_id": category,
                    "area": int(mask.sum()),
                    "bbox": mask_bbox(mask),
                    "iscrowd": 0,
                }
            )
    return ids, segments


def convert_sample(sample: ADE20KSample, out_dir: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Write ``sample``'s panoptic PNG into ``out_dir``; its ``images`` and ``annotations``
    entries."""
    image = image_entry(sample)
    shape = (image["height"], image["width"])
    ids, segments = panoptic_label(read_semantic(sample, shape), read_instances(sample, shape))
    file_name = f"{sample.image_id}.png"
    with atomic_path(out_dir / file_name) as tmp:
        Image.fromarray(id_to_rgb(ids)).save(tmp)
    return image, {"image_id": sample.image_id, "file_name": file_name, "segments_info": segments}


def prepare_ade20k_panoptic(root: Path, workers: int = 1) -> int:
    """Write both splits' panoptic PNGs and JSON under ``root/ADEChallengeData2016``; return the
    number of images."""
    base = Path(root) / ADE20K_ROOT
    require_instance_annotations(base)
    written = 0
    for split, folder in ADE20K_SPLITS.items():
        samples = split_samples(base, folder)
        out_dir = base / f"ade20k_panoptic_{split}"
        out_dir.mkdir(exist_ok=True)
        convert = functools.partial(convert_sample, out_dir=out_dir)
        entries = list(progress_map(convert, samples, workers, f"ADE20K panoptic {split}"))
        content = {
            "images": [image for image, _ in entries],
            "annotations": [annotation for _, annotation in entries],
            "categories": ade20k_panoptic_categories(),
        }
        write_json(base / f"ade20k_panoptic_{split}.json", content)
        written += len(entries)
    return written


if __name__ == "__main__":
    run_preparation(prepare_ade20k_panoptic, __doc__.splitlines()[0])
