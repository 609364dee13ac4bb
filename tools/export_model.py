"""Export a SeMask model's semantic inference to torch.export (.pt2) or ONNX (.onnx).

    python tools/export_model.py --config-file CONFIG --format {torch_export,onnx} \\
        --height H --width W --output FILE [--benchmark N] [KEY VALUE ...]

The exported program takes one uint8 image [3, H, W] in the config's INPUT.FORMAT and returns the
semantic scores [K, H, W] the eager model returns as ``sem_seg`` (see semask/export.py). Trailing
KEY VALUE pairs override the config as in train_net.py; MODEL.WEIGHTS is loaded with the
project's safe, strict loader. After export the file is run on a random image and compared with
the eager model (max relative error); ``--benchmark N`` also times N runs of each.
"""

import argparse
import logging
import statistics
import time
from typing import Dict, List, Optional

import torch
from detectron2.utils.logger import setup_logger

from semask.benchmarking import alternate
from semask.engine import build_cfg
from semask.export import (
    ExportedSegmenter,
    SemanticScores,
    example_image,
    export_onnx,
    export_program,
    relative_error,
)
from semask.predictor import SeMaskPredictor

logger = logging.getLogger("semask.export_model")
FORMATS = {"torch_export": ".pt2", "onnx": ".onnx"}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--height", required=True, type=int, help="image height H (fixed)")
    parser.add_argument("--width", required=True, type=int, help="image width W (fixed)")
    parser.add_argument("--output", required=True, help="file to write (.pt2 or .onnx)")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N", help="time N runs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    suffix = FORMATS[args.format]
    if not args.output.endswith(suffix):
        parser.error(f"--output {args.output!r}: --format {args.format} writes a {suffix} file")
    if min(args.height, args.width) < 32:
        parser.error(f"--height/--width must be >= 32, got {args.height} x {args.width}")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Export, check against eager, optionally benchmark; returns the measured numbers."""
    args = parse_args(argv)
    setup_logger(name="semask")
    cfg = build_cfg(args.config_file, args.opts)
    model = SeMaskPredictor(cfg).model
    start = time.perf_counter()
    if args.format == "onnx":
        export_onnx(model, args.height, args.width, args.output)
    else:
        torch.export.save(export_program(model, args.height, args.width), args.output)
    results = {"export_s": time.perf_counter() - start}
    segmenter = ExportedSegmenter(args.output)
    image = example_image(args.height, args.width, seed=1)
    eager = SemanticScores(model)
    with torch.no_grad():
        expected = eager(image)
    results["relative_error"] = relative_error(segmenter(image), expected)
    results["size_mb"] = segmenter.path.stat().st_size / 2**20
    if args.benchmark > 0:
        with torch.no_grad():
            runs = {"eager_ms": lambda: eager(image), "exported_ms": lambda: segmenter(image)}
            times = alternate(
                runs, repeats=args.benchmark, warmup=1, device=torch.device(cfg.MODEL.DEVICE)
            )
        results.update({name: statistics.median(t) * 1000 for name, t in times.items()})
    logger.info(
        "wrote %s (%s, %d x %d): %s",
        args.output,
        args.format,
        args.height,
        args.width,
        ", ".join(f"{key} {value:.4g}" for key, value in results.items()),
    )
    return results


if __name__ == "__main__":
    main()
