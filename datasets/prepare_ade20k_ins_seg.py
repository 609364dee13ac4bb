"""Prepare ADE20K instance segmentation (``ade20k_instance_{train,val}``) for detectron2.

Reads ``$DETECTRON2_DATASETS/ADEChallengeData2016/{images,annotations_instance}/`` (encoding in
:mod:`semask.data.ade20k_annotations`) and writes ``ade20k_instance_{train,val}.json`` there, in
the format of Mask2Former's script of the same name: a COCO instance JSON whose image ids are the
file stems, with one annotation per instance (category ids are the ADE20K dataset ids of the 100
thing classes, masks are RLE, ``iscrowd`` 0).

    python datasets/prepare_ade20k_ins_seg.py [--root DIR] [--workers N]
"""

import itertools
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util

from semask.data.ade20k_annotations import (
    ADE20KSample,
    image_entry,
    read_instances,
    require_instance_annotations,
    split_samples,
)
from semask.data.ade20k_categories import ade20k_instance_categories
from semask.data.conversion import mask_bbox, progress_map, run_preparation, write_json
from semask.data.panoptic_datasets import ADE20K_ROOT, ADE20K_SPLITS


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """The COCO RLE (``size``, ``counts`` as text) of a bool mask [H, W]."""
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def instance_annotations(sample: ADE20KSample) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """``sample``'s ``images`` entry and its instances' annotations (all but ``id``)."""
    image = image_entry(sample)
    annotations = [
        {
            "image_id": sample.image_id,
            "category_id": category,
            "iscrowd": 0,
            "area": int(mask.sum()),
            "bbox": mask_bbox(mask),
            "segmentation": encode_mask(mask),
        }
        for category, mask in read_instances(sample, (image["height"], image["width"]))
    ]
    return image, annotations


def prepare_ade20k_instances(root: Path, workers: int = 1) -> int:
    """Write both splits' instance JSON under ``root/ADEChallengeData2016``; return the number of
    images."""
    base = Path(root) / ADE20K_ROOT
    require_instance_annotations(base)
    written = 0
    for split, folder in ADE20K_SPLITS.items():
        samples = split_samples(base, folder)
        entries = list(
            progress_map(instance_annotations, samples, workers, f"ADE20K instances {split}")
        )
        annotations = itertools.chain.from_iterable(anns for _, anns in entries)
        content = {
            "images": [image for image, _ in entries],
            "annotations": [{"id": i, **ann} for i, ann in enumerate(annotations, start=1)],
            "categories": ade20k_instance_categories(),
        }
        write_json(base / f"ade20k_instance_{split}.json", content)
        written += len(entries)
    return written


if __name__ == "__main__":
    run_preparation(prepare_ade20k_instances, __doc__.splitlines()[0])
