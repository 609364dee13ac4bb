"""Prepare COCO-Stuff-10k (``cocostuff-10k-v1.1.zip``) for detectron2.

Reads ``$DETECTRON2_DATASETS/coco/coco_stuff_10k/{images/*.jpg, annotations/*.mat,
imageLists/{train,test}.txt}``; each ``.mat`` holds the label map ``S`` (0 unlabeled, 1..182
COCO-Stuff ids). Writes ``images_detectron2/{train,test}/*.jpg`` and
``annotations_detectron2/{train,test}/*.png`` with the 171 used ids mapped to 0..170 and
everything else to 255, the layout of ``coco_stuff_10k_sem_seg_{train,test}``.

    python datasets/prepare_coco_stuff_10k.py [--root DIR]
"""

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from semask.data.builtin import COCO_STUFF_10K_SPLITS, COCO_STUFF_IDS
from semask.io import atomic_path

IGNORE_LABEL = 255


def id_lookup_table() -> np.ndarray:
    """uint8 [256]: COCO-Stuff id -> contiguous class (0..170), 255 for unused ids."""
    table = np.full(256, IGNORE_LABEL, np.uint8)
    table[list(COCO_STUFF_IDS)] = np.arange(len(COCO_STUFF_IDS), dtype=np.uint8)
    return table


def convert_coco_stuff_label(label: np.ndarray) -> np.ndarray:
    """[H, W] COCO-Stuff ids (0 unlabeled, 1..182) -> uint8 [H, W] classes 0..170 / 255."""
    if label.ndim != 2:
        raise ValueError(f"COCO-Stuff labels must be single-channel, got shape {label.shape}")
    if label.min(initial=0) < 0 or label.max(initial=0) > 182:
        raise ValueError(f"COCO-Stuff labels must be in 0..182, found {label.min()}..{label.max()}")
    return id_lookup_table()[label.astype(np.int64)]


def prepare_coco_stuff_10k(root: Path) -> int:
    """Convert both splits under ``root/coco/coco_stuff_10k``; return the number of images."""
    base = Path(root) / "coco" / "coco_stuff_10k"
    written = 0
    for split in COCO_STUFF_10K_SPLITS:
        list_file = base / "imageLists" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(
                f"{list_file} not found: unzip cocostuff-10k-v1.1.zip in {base}"
            )
        names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        image_dir = base / "images_detectron2" / split
        label_dir = base / "annotations_detectron2" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for name in tqdm(names, desc=f"COCO-Stuff-10k {split}"):
            mat_file = base / "annotations" / f"{name}.mat"
            mat = scipy.io.loadmat(str(mat_file))
            if "S" not in mat:
                raise KeyError(f"{mat_file} has no label map 'S'")
            label = convert_coco_stuff_label(np.asarray(mat["S"]))
            with atomic_path(label_dir / f"{name}.png") as tmp:
                Image.fromarray(label).save(tmp)
            with atomic_path(image_dir / f"{name}.jpg") as tmp:
                shutil.copyfile(base / "images" / f"{name}.jpg", tmp)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"))
    prepare_coco_stuff_10k(Path(parser.parse_args().root))


if __name__ == "__main__":
    main()
