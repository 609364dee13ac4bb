#!/usr/bin/env python
"""Inference latency, throughput, training-step time and peak memory of a SeMask config.

    python tools/benchmark.py --config-file CONFIG [--height 512 --width 512 --batch 1] \\
        [--iters 5 --warmup 2] [--device cpu|cuda] [--dtype float32 bfloat16 float16] \\
        [--compile off on] [--channels-last off on] [--threads 1 2] [--modes eval train] \\
        [--compare-with hf] [--reference-device cpu] [--parity-tolerance 1e-4] [--matmul-rate] \\
        [--no-memory] [--output FILE.json] [KEY VALUE ...]

Every combination of the listed --dtype / --compile / --channels-last / --threads values is one
case. In a case the models (this project's, and transformers' Mask2Former Swin-T peer with
``--compare-with hf``) are built once and measured alternately (A B A B ...): ``eval`` is one
batch of inference without gradients, ``train`` one forward + backward + optimizer step on a
synthetic mapper-shaped batch (``image`` + ``sem_seg``). Peak memory is measured in a fresh
process per model and mode (peak RSS on the CPU, max allocated on CUDA). In eval mode,
``agree %`` is the share of pixels whose top class matches a float32 eager copy of the model on
``--reference-device`` (default ``--device``; ``cpu`` with ``--device cuda`` checks CPU/GPU
parity), with the scores' relative error in the JSON; ``--parity-tolerance`` makes the tool exit
with status 1 when a float32 case's relative error exceeds it. Trailing KEY VALUE pairs override
the config (``MODEL.WEIGHTS FILE`` loads weights); after a list option, put ``--`` before them.
The table is printed; ``--output`` also writes everything as JSON (see docs/PERFORMANCE.md for
the fields).
"""

import argparse
import itertools
import os
import sys
from typing import Dict, List, Optional

import torch

from semask.benchmarking import Settings, SubjectSpec, format_table, machine_info, run_case
from semask.benchmarking.hf_peer import PeerUnavailableError, require_transformers
from semask.benchmarking.runner import (
    MODES,
    NATIVE_BF16_FLAGS,
    parity_failures,
    ratios,
    write_report,
)
from semask.benchmarking.subjects import DTYPES
from semask.benchmarking.timing import matmul_rate
from semask.engine import override_pairs

ON_OFF = {"on": True, "off": False}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5, help="timed runs per model and mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["float32"])
    parser.add_argument("--compile", nargs="+", choices=sorted(ON_OFF), default=["off"])
    parser.add_argument("--channels-last", nargs="+", choices=sorted(ON_OFF), default=["off"])
    parser.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--compare-with", choices=("hf",), help="also run a peer model")
    parser.add_argument(
        "--reference-device", help="where the float32 eager reference runs (default --device)"
    )
    parser.add_argument(
        "--parity-tolerance",
        type=float,
        metavar="REL",
        help="fail if a float32 case's scores differ from the reference by more (relative)",
    )
    parser.add_argument(
        "--matmul-rate", action="store_true", help="measure matmul GFLOP/s per dtype"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--output", help="JSON file to write")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    try:
        args.opts = override_pairs(args.opts)
    except ValueError as error:
        parser.error(str(error))
    if min(args.height, args.width) < 32 or args.batch < 1 or args.iters < 1 or args.warmup < 0:
        parser.error(
            f"need --height/--width >= 32, --batch >= 1, --iters >= 1, --warmup >= 0; got "
            f"{args.height} x {args.width}, {args.batch}, {args.iters}, {args.warmup}"
        )
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f"--output {args.output}: its folder does not exist")
    args.reference_device = args.reference_device or args.device
    for option, device in (
        ("--device", args.device),
        ("--reference-device", args.reference_device),
    ):
        if device.startswith("cuda") and not torch.cuda.is_available():
            parser.error(f"{option} {device}: CUDA is not available on this machine")
    if args.compare_with == "hf":
        try:
            require_transformers()
        except PeerUnavailableError as error:
            parser.error(str(error))
    return args


def cases(args: argparse.Namespace) -> List[Settings]:
    """One :class:`Settings` per combination of the listed options."""
    return [
        Settings(args.device, dtype, ON_OFF[compiled], ON_OFF[channels_last], threads)
        for dtype, compiled, channels_last, threads in itertools.product(
            args.dtype, args.compile, args.channels_last, args.threads
        )
    ]


def matmul_rates(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """GFLOP/s of a 1024 x 1024 matmul per dtype (float32 and each listed one) and thread count:
    the ceiling each case's achieved rate compares with."""
    rates: Dict[str, Dict[str, float]] = {}
    for dtype in dict.fromkeys(["float32", *args.dtype]):
        rates[dtype] = {}
        for threads in sorted(set(args.threads)):
            torch.set_num_threads(threads)
            rates[dtype][str(threads)] = matmul_rate(device=args.device, dtype=DTYPES[dtype])
    return rates


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Run every case, print the table (and ratios), write ``--output``; returns the report."""
    args = parse_args(argv)
    specs = [
        SubjectSpec(
            "semask", args.batch, args.height, args.width, args.config_file, tuple(args.opts)
        )
    ]
    if args.compare_with:
        specs.append(SubjectSpec(args.compare_with, args.batch, args.height, args.width))
    report: Dict[str, object] = {
        "config_file": args.config_file,
        "opts": args.opts,
        "machine": machine_info(args.device),
        "input": {"batch": args.batch, "height": args.height, "width": args.width},
        "reference_device": args.reference_device,
        "iters": args.iters,
        "warmup": args.warmup,
        "results": [],
    }
    if (
        "bfloat16" in args.dtype
        and args.device == "cpu"
        and not report["machine"]["cpu_native_bf16"]
    ):
        sys.stdout.write(
            f"note: this CPU ({report['machine']['cpu']}) has no native bf16 matrix product "
            f"({' / '.join(NATIVE_BF16_FLAGS)}): bfloat16 runs an emulated path, far slower than "
            "float32\n"
        )
    if args.matmul_rate:
        report["matmul_gflops"] = matmul_rates(args)
    for settings in cases(args):
        report["results"] += run_case(
            specs,
            settings,
            iters=args.iters,
            warmup=args.warmup,
            modes=args.modes,
            memory=not args.no_memory,
            reference_device=args.reference_device,
        )
    report["ratios"] = ratios(report["results"], baseline="semask")
    sys.stdout.write(format_table(report["results"]) + "\n")
    for ratio in report["ratios"]:
        sys.stdout.write(
            f"{ratio['case']} {ratio['mode']}: {ratio['model']} / semask median latency "
            f"{ratio['latency_ratio']:.2f}\n"
        )
    for dtype, rates in report.get("matmul_gflops", {}).items():
        for threads, rate in rates.items():
            sys.stdout.write(f"matmul 1024x1024 {dtype}, {threads} threads: {rate:.1f} GFLOP/s\n")
    if args.output:
        write_report(args.output, report)
    if args.parity_tolerance is not None:
        failures = parity_failures(report["results"], args.parity_tolerance)
        if failures:
            raise SystemExit(
                f"float32 parity with {args.reference_device} float32 eager failed (tolerance "
                f"{args.parity_tolerance:g}):\n" + "\n".join(failures)
            )
    return report


if __name__ == "__main__":
    main()
