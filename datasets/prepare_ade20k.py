"""Prepare ADE20K-150 (SceneParsing, ``ADEChallengeData2016.zip``) for detectron2.

Reads ``$DETECTRON2_DATASETS/ADEChallengeData2016/annotations/{training,validation}/*.png``
(0 = "other", 1..150 = classes) and writes ``annotations_detectron2/{training,validation}/*.png``
with classes 0..149 and 255 for "other", the layout of detectron2's ``ade20k_sem_seg_*``.

    python datasets/prepare_ade20k.py [--root DIR]
"""

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from semask.io import atomic_path

SPLITS = ("training", "validation")


def convert_ade20k_label(label: np.ndarray) -> np.ndarray:
    """uint8 [H, W] ADE20K label (0 other, 1..150) -> uint8 [H, W] (0..149, 255 ignore)."""
    if label.ndim != 2:
        raise ValueError(f"ADE20K labels must be single-channel, got shape {label.shape}")
    if label.max(initial=0) > 150:
        raise ValueError(f"ADE20K labels must be in 0..150, found {int(label.max())}")
    return (label.astype(np.int64) - 1).astype(np.uint8)


def prepare_ade20k(root: Path) -> int:
    """Convert every split under ``root/ADEChallengeData2016``; return the number of files."""
    base = Path(root) / "ADEChallengeData2016"
    if not (base / "annotations").is_dir():
        raise FileNotFoundError(
            f"{base / 'annotations'} not found: unzip ADEChallengeData2016.zip there"
        )
    written = 0
    for split in SPLITS:
        in_dir = base / "annotations" / split
        out_dir = base / "annotations_detectron2" / split
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in tqdm(sorted(in_dir.glob("*.png")), desc=f"ADE20K {split}"):
            label = np.asarray(Image.open(path))
            with atomic_path(out_dir / path.name) as tmp:
                Image.fromarray(convert_ade20k_label(label)).save(tmp)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"))
    prepare_ade20k(Path(parser.parse_args().root))


if __name__ == "__main__":
    main()
