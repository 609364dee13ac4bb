"""Helpers shared by the panoptic and instance preparation scripts (``datasets/prepare_*.py``):
a map over worker processes with a progress bar, segment boxes and atomic JSON writes."""

import argparse
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Sequence, TypeVar

import numpy as np
from tqdm import tqdm

from ..io import atomic_open

__all__ = ["default_workers", "mask_bbox", "progress_map", "write_json"]

Item = TypeVar("Item")
Result = TypeVar("Result")
# Items handed to a worker at a time.
CHUNK_SIZE = 16


def default_workers() -> int:
    """The default number of worker processes: one per CPU core."""
    return os.cpu_count() or 1


def progress_map(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int, desc: str
) -> Iterator[Result]:
    """``function`` of each of ``items``, in order, with a progress bar; in ``workers`` processes
    (``function`` and items must pickle), or in this one when ``workers`` <= 1."""
    if workers <= 1:
        yield from map(function, tqdm(items, desc=desc))
        return
    with multiprocessing.Pool(min(workers, len(items)) or 1) as pool:
        results: Iterable[Result] = pool.imap(function, items, chunksize=CHUNK_SIZE)
        yield from tqdm(results, total=len(items), desc=desc)


def mask_bbox(mask: np.ndarray) -> List[int]:
    """The COCO box ``[x, y, width, height]`` (integer pixels) of a non-empty bool mask [H, W]."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("an empty mask has no bounding box")
    x, y = int(columns[0]), int(rows[0])
    return [x, y, int(columns[-1]) - x + 1, int(rows[-1]) - y + 1]


def write_json(path: os.PathLike, content: Any) -> None:
    """Write ``content`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as file:
        json.dump(content, file)


def run_preparation(prepare: Callable[[Path, int], Any], description: str) -> None:
    """The command line of a preparation script: ``--root`` (the data set root, default
    ``$DETECTRON2_DATASETS`` or ``datasets``) and ``--workers``; runs ``prepare(root, workers)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"))
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    prepare(Path(args.root), args.workers)
