#!/usr/bin/env python
"""Draw samples of the training set, as stored or as the training mapper feeds them to the model.

    python tools/visualize_data.py --config-file CONFIG --source {annotation,dataloader} \
        --output DIR [--num N] [KEY VALUE ...]

``annotation``: the first N images of ``DATASETS.TRAIN`` with their label maps as stored.
``dataloader``: N samples of the training loader (the trainer's own: sampler, mapper and its
augmentation: resize, crop, colour jitter, flip, padding), as the model receives them.
Each picture is image | labels (class names on the regions) over a legend of the classes shown;
pixels of the ignore label are left untinted. Small images are enlarged for legibility.
"""

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from tqdm import tqdm

from semask.data.mapper import read_labelled_sample
from semask.data.metadata import resolve_metadata
from semask.engine import Trainer, build_cfg, validate_config
from semask.visualization import draw_labelled
from semask.writers import save_image

Sample = Tuple[str, np.ndarray, np.ndarray]


def stored_samples(cfg: Any) -> Iterator[Sample]:
    """(image file, RGB image [H, W, 3], labels [H, W]) of ``DATASETS.TRAIN``'s records as stored,
    read and checked as training reads them."""
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for name in cfg.DATASETS.TRAIN:
        ignore_label = MetadataCatalog.get(name).get("ignore_label", 255)
        for record in DatasetCatalog.get(name):
            image, label = read_labelled_sample(record, "RGB", num_classes, ignore_label)
            yield record["file_name"], image, label


def loader_samples(cfg: Any) -> Iterator[Sample]:
    """(image file, RGB image [H, W, 3], labels [H, W]) of the trainer's training loader's batches,
    after the mapper."""
    for batch in Trainer.build_train_loader(cfg):
        for sample in batch:
            yield _from_mapped(sample, cfg.INPUT.FORMAT)


def _from_mapped(sample: Dict[str, Any], image_format: str) -> Sample:
    image = convert_image_to_rgb(sample["image"].permute(1, 2, 0).numpy(), image_format)
    return sample["file_name"], np.ascontiguousarray(image), sample["sem_seg"].numpy()


def main(argv: List[str]) -> List[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--source", choices=("annotation", "dataloader"), required=True)
    parser.add_argument("--output", required=True, type=Path, help="folder for the pictures")
    parser.add_argument("--num", type=int, default=16, help="samples to draw (default 16)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be at least 1, got {args.num}")
    cfg = build_cfg(args.config_file, args.opts)
    validate_config(cfg)
    metadata = resolve_metadata(cfg.DATASETS.TRAIN[0], cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    samples = stored_samples(cfg) if args.source == "annotation" else loader_samples(cfg)
    args.output.mkdir(parents=True, exist_ok=True)
    written = []
    progress = tqdm(itertools.islice(samples, args.num), total=args.num, desc=args.source)
    for index, (file_name, image, labels) in enumerate(progress):
        path = args.output / f"{index:04d}_{Path(file_name).stem}.png"
        save_image(path, draw_labelled(image, [labels], metadata))
        written.append(path)
    print(f"{len(written)} pictures of {args.source} samples written to {args.output}")
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
