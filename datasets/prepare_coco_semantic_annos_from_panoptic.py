"""Prepare the semantic labels of COCO panoptic 2017 (``coco_2017_*_panoptic_with_sem_seg``).

Reads ``$DETECTRON2_DATASETS/coco/annotations/panoptic_{train,val}2017.json`` and the panoptic
PNGs of ``coco/panoptic_{train,val}2017/``, and writes ``coco/panoptic_semseg_{train,val}2017/``
as Mask2Former's ``prepare_coco_semantic_annos_from_panoptic_annos.py`` does: one uint8 PNG per
panoptic PNG, of the same name, holding each segment's contiguous class (0..132, COCO's 133
panoptic categories in the order of their ids, things and stuff together), crowd segments
included, and 255 for void pixels.

    python datasets/prepare_coco_semantic_annos_from_panoptic.py [--root DIR] [--workers N]
"""

from pathlib import Path
from typing import Any, Dict, List, Tuple

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from PIL import Image

from semask.data.conversion import progress_map, run_preparation
from semask.data.image_io import read_image
from semask.data.panoptic_datasets import COCO_SPLITS, panoptic_annotations
from semask.data.panoptic_labels import rgb_to_id, semantic_from_segments
from semask.io import atomic_path

IGNORE_LABEL = 255
# (panoptic PNG, semantic PNG to write, the image's segments with contiguous category ids).
Job = Tuple[Path, Path, List[Dict[str, Any]]]


def convert_panoptic_png(job: Job) -> None:
    """Write the semantic PNG of one panoptic PNG (:func:`semantic_from_segments`)."""
    panoptic_file, semantic_file, segments = job
    segment_ids = rgb_to_id(read_image(str(panoptic_file), format="RGB"))
    semantic = semantic_from_segments(segment_ids, segments, IGNORE_LABEL)
    with atomic_path(semantic_file) as tmp:
        Image.fromarray(semantic).save(tmp)


def prepare_split(
    panoptic_json: Path, panoptic_root: Path, semantic_root: Path, workers: int = 1
) -> int:
    """Write the semantic PNG of every annotation of ``panoptic_json`` into ``semantic_root``;
    return their number."""
    annotations = panoptic_annotations(str(panoptic_json), COCO_CATEGORIES)
    semantic_root.mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            panoptic_root / record["pan_seg_file_name"],
            semantic_root / record["pan_seg_file_name"],
            record["segments_info"],
        )
        for record in annotations
    ]
    for _ in progress_map(convert_panoptic_png, jobs, workers, semantic_root.name):
        pass
    return len(jobs)


def prepare_coco_panoptic_semantic(root: Path, workers: int = 1) -> int:
    """Convert both splits under ``root/coco``; return the number of semantic PNGs written."""
    coco = Path(root) / "coco"
    written = 0
    for split in COCO_SPLITS:
        panoptic_json = coco / "annotations" / f"panoptic_{split}2017.json"
        panoptic_root = coco / f"panoptic_{split}2017"
        for path in (panoptic_json, panoptic_root):
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} not found: unzip panoptic_annotations_trainval2017.zip in {coco} "
                    f"and its annotations/panoptic_{split}2017.zip in {coco}"
                )
        written += prepare_split(
            panoptic_json, panoptic_root, coco / f"panoptic_semseg_{split}2017", workers
        )
    return written


if __name__ == "__main__":
    run_preparation(prepare_coco_panoptic_semantic, __doc__.splitlines()[0])
