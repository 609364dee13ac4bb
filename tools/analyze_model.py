#!/usr/bin/env python
"""FLOPs, parameters and activations of a SeMask config, per module group, at a given input size.

    python tools/analyze_model.py --config-file CONFIG [--height 512 --width 512] [--depth 2] \\
        [--latency-ms X | --benchmark N] [--output FILE.json] [KEY VALUE ...]

Counts one eval-mode semantic inference of a uint8 image (fvcore's FlopCountAnalysis and
ActivationCountAnalysis, with explicit handles for SDPA, grid_sample and MSDeformAttn's gather;
operators without a handle are listed as "uncounted", not silently dropped). GFLOPs = 2 x
multiply-adds. The groups are the modules ``--depth`` levels down (1: backbone / sem_seg_head;
2: pixel decoder, transformer decoder, ...). ``--latency-ms X`` (e.g. from tools/benchmark.py) or
``--benchmark N`` (median of N timed runs here) gives the achieved GFLOP/s.
"""

import argparse
import statistics
import sys
from dataclasses import asdict
from typing import Dict, List, Optional

import torch

from semask.benchmarking import alternate
from semask.benchmarking.flops import analyze, format_analysis
from semask.benchmarking.runner import write_report
from semask.engine import build_cfg
from semask.export import SemanticScores, example_image
from semask.predictor import SeMaskPredictor


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2, help="module depth of the group rows")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--latency-ms", type=float, help="a measured inference latency")
    timing.add_argument("--benchmark", type=int, default=0, metavar="N", help="time N runs")
    parser.add_argument("--output", help="JSON file to write")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if min(args.height, args.width) < 32 or args.depth < 1:
        parser.error(
            f"need --height/--width >= 32 and --depth >= 1, got {args.height} x {args.width}, "
            f"depth {args.depth}"
        )
    if args.latency_ms is not None and args.latency_ms <= 0:
        parser.error(f"--latency-ms must be > 0, got {args.latency_ms}")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Analyse, print, write ``--output``; returns the report."""
    args = parse_args(argv)
    cfg = build_cfg(args.config_file, [*args.opts, "MODEL.DEVICE", "cpu"])
    model = SeMaskPredictor(cfg).model
    analysis = analyze(model, args.height, args.width, args.depth)
    report = {"config_file": args.config_file, "height": args.height, "width": args.width}
    report.update(asdict(analysis), gflops=analysis.gflops)
    latency_ms = args.latency_ms
    if args.benchmark:
        scores, image = SemanticScores(model), example_image(args.height, args.width)
        with torch.inference_mode():
            seconds = alternate(
                {"model": lambda: scores(image)},
                repeats=args.benchmark,
                warmup=1,
                device=torch.device("cpu"),
            )["model"]
        latency_ms = statistics.median(seconds) * 1e3
    text = format_analysis(analysis)
    if latency_ms is not None:
        report["latency_ms"] = latency_ms
        report["achieved_gflops_per_s"] = analysis.gflops / (latency_ms / 1e3)
        text += (
            f"\nat {latency_ms:.1f} ms per image ({torch.get_num_threads()} threads): "
            f"{report['achieved_gflops_per_s']:.1f} GFLOP/s achieved"
        )
    sys.stdout.write(text + "\n")
    if args.output:
        write_report(args.output, report)
    return report


if __name__ == "__main__":
    main()
