"""Prepare Cityscapes fine annotations (``gtFine_trainvaltest.zip``) for detectron2.

Writes ``*_gtFine_labelTrainIds.png`` (19 training classes, 255 ignore) beside every
``*_gtFine_polygons.json`` under ``$DETECTRON2_DATASETS/cityscapes/gtFine``, with
``cityscapesscripts``; images stay in ``leftImg8bit`` (``leftImg8bit_trainvaltest.zip``).

    python datasets/prepare_cityscapes.py [--root DIR]
"""

import argparse
import os
from pathlib import Path

from cityscapesscripts.preparation.json2labelImg import json2labelImg
from tqdm import tqdm

POLYGONS_SUFFIX = "_polygons.json"
TRAIN_IDS_SUFFIX = "_labelTrainIds.png"


def prepare_cityscapes(root: Path) -> int:
    """Write the trainId label images under ``root/cityscapes/gtFine``; return their number."""
    gt_dir = Path(root) / "cityscapes" / "gtFine"
    if not gt_dir.is_dir():
        raise FileNotFoundError(
            f"{gt_dir} not found: unzip gtFine_trainvaltest.zip in {gt_dir.parent}"
        )
    polygon_files = sorted(gt_dir.glob(f"*/*/*{POLYGONS_SUFFIX}"))
    if not polygon_files:
        raise FileNotFoundError(f"no *{POLYGONS_SUFFIX} files under {gt_dir}/<split>/<city>/")
    for path in tqdm(polygon_files, desc="Cityscapes trainIds"):
        out_path = str(path)[: -len(POLYGONS_SUFFIX)] + TRAIN_IDS_SUFFIX
        json2labelImg(str(path), out_path, "trainIds")
    return len(polygon_files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"))
    prepare_cityscapes(Path(parser.parse_args().root))


if __name__ == "__main__":
    main()
