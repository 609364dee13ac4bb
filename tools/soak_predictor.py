"""Soak test of SeMaskPredictor: many generated images of mixed sizes, peak memory over time.

Not a test: it prints the process's peak resident memory at the start, every ``--every`` images
and at the end, and the mean time per image size. Example::

    python tools/soak_predictor.py --num 200 --render
    python tools/soak_predictor.py --config-file CONFIG --sizes 640x480 1024x768 MODEL.WEIGHTS W
"""

import argparse
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

import semask.data  # noqa: F401  (registers the data sets and their metadata)
from semask.benchmarking.timing import peak_rss_mb
from semask.engine import build_cfg
from semask.predictor import SeMaskPredictor
from semask.visualization import draw_overlay, draw_priors_figure

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
Size = Tuple[int, int]


def parse_size(text: str) -> Size:
    """``WIDTHxHEIGHT`` -> (width, height)."""
    try:
        width, height = (int(value) for value in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT") from None
    return width, height


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=str(QUICKSTART), metavar="FILE")
    parser.add_argument("--num", type=int, default=200, help="number of images")
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[(320, 240), (640, 480), (1024, 768), (480, 640), (1920, 1080)],
        help="WIDTHxHEIGHT sizes drawn at random for most images",
    )
    parser.add_argument(
        "--large",
        type=parse_size,
        nargs="*",
        default=[(4000, 3000), (6000, 4000)],
        help="sizes used in turn for every --large-every-th image",
    )
    parser.add_argument("--large-every", type=int, default=40)
    parser.add_argument("--render", action="store_true", help="also draw the demo's overlay")
    parser.add_argument("--priors", action="store_true", help="also predict and draw priors")
    parser.add_argument("--every", type=int, default=25, help="report memory every N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    return parser


def schedule(args: argparse.Namespace) -> List[Size]:
    """The size of every image: drawn from ``--sizes``, every ``--large-every``-th from
    ``--large`` in turn (the first one halfway into the first period)."""
    rng = np.random.default_rng(args.seed)
    sizes = []
    for i in range(args.num):
        if args.large and i % args.large_every == args.large_every // 2:
            sizes.append(args.large[(i // args.large_every) % len(args.large)])
        else:
            sizes.append(args.sizes[rng.integers(len(args.sizes))])
    return sizes


def make_image(rng: np.random.Generator, size: Size) -> np.ndarray:
    """A BGR uint8 image [height, width, 3] of smooth random colour blobs."""
    width, height = size
    coarse = rng.integers(0, 256, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    opts = ["MODEL.DEVICE", "cpu"] + args.opts
    predictor = SeMaskPredictor(build_cfg(args.config_file, opts), return_priors=args.priors)
    print(f"start: peak RSS {peak_rss_mb():.0f} MiB (model built)", flush=True)
    rng = np.random.default_rng(args.seed + 1)
    seconds = defaultdict(list)
    for index, size in enumerate(schedule(args), start=1):
        image = make_image(rng, size)
        start = time.perf_counter()
        prediction = predictor.predict(image)
        if args.render:
            rgb = image[:, :, ::-1]
            draw_overlay(rgb, prediction.labels, predictor.metadata)
            if prediction.sem_prior is not None:
                draw_priors_figure(
                    rgb,
                    prediction.labels,
                    prediction.sem_prior,
                    prediction.stage_priors,
                    predictor.metadata,
                )
        seconds[size].append(time.perf_counter() - start)
        if index % args.every == 0:
            print(f"{index} images: peak RSS {peak_rss_mb():.0f} MiB", flush=True)
    print(f"end ({args.num} images): peak RSS {peak_rss_mb():.0f} MiB")
    for (width, height), times in sorted(seconds.items(), key=lambda item: item[0][0] * item[0][1]):
        print(f"{width}x{height}: {len(times)} images, {np.mean(times):.3f} s per image")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
