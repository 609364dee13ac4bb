#!/usr/bin/env python
"""Forward latency of a SeMask backbone with SDPA attention versus plain matmul-softmax.

    python tools/benchmark_backbone.py --backbone swin --size T --height 512 --width 512
    python tools/benchmark_backbone.py --backbone mit --size b2 --device cuda --batch 2

Its linear layers use ``--cpu-linear`` (``MODEL.CPU_LINEAR``, default oneDNN, as in the models).
Both paths run on the same weights and input, alternately (see semask.benchmarking.alternate); the
script prints the median latency of each, the speed-up, and the largest output difference between
them. tools/benchmark.py measures whole models.
"""

import argparse
import statistics
import sys
from typing import Dict, Optional, Sequence

import torch

from semask.benchmarking import alternate
from semask.modeling.backbone import (
    MIT_SIZES,
    SWIN_SIZES,
    D2SeMaskMiT,
    D2SeMaskSwinTransformer,
    set_sdpa,
)
from semask.modeling.onednn_linear import CPU_LINEARS, ONEDNN, route_linears


def build(backbone: str, size: str, num_classes: int) -> torch.nn.Module:
    """A SeMask Swin (``size`` T/S/B/L) or MiT (b0..b5) backbone at its published size."""
    if backbone == "swin":
        sizes = SWIN_SIZES[size]
        return D2SeMaskSwinTransformer(
            num_classes=num_classes, sem_window_size=sizes["window_size"], **sizes
        )
    return D2SeMaskMiT(num_classes=num_classes, **MIT_SIZES[size])


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", choices=("swin", "mit"), default="swin")
    parser.add_argument("--size", default="T", help="Swin T/S/B/L or MiT b0..b5")
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--cpu-linear", choices=CPU_LINEARS, default=ONEDNN)
    args = parser.parse_args(argv)
    sizes = SWIN_SIZES if args.backbone == "swin" else MIT_SIZES
    if args.size not in sizes:
        parser.error(f"--size {args.size!r} is not a {args.backbone} size: {sorted(sizes)}")
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = build(args.backbone, args.size, args.num_classes).to(args.device, dtype).eval()
    route_linears(model, args.cpu_linear)
    x = torch.randn(args.batch, 3, args.height, args.width, device=args.device, dtype=dtype)

    def forward(enabled: bool) -> Dict[str, torch.Tensor]:
        set_sdpa(model, enabled)
        return model(x)

    with torch.inference_mode():
        times = alternate(
            {"sdpa": lambda: forward(True), "matmul": lambda: forward(False)},
            repeats=args.iters,
            warmup=args.warmup,
            device=x.device,
        )
        outputs = {"sdpa": forward(True), "matmul": forward(False)}
    results = {name: statistics.median(seconds) for name, seconds in times.items()}
    diff = max(
        (outputs["sdpa"][k] - outputs["matmul"][k]).abs().max().item() for k in outputs["sdpa"]
    )
    sys.stdout.write(
        f"{args.backbone}-{args.size} {args.batch}x3x{args.height}x{args.width} on {args.device} "
        f"({args.dtype}), median of {args.iters}:\n"
        f"  sdpa    {results['sdpa'] * 1e3:9.2f} ms\n"
        f"  matmul  {results['matmul'] * 1e3:9.2f} ms\n"
        f"  speed-up {results['matmul'] / results['sdpa']:.2f}x, max |difference| {diff:.2e}\n"
    )


if __name__ == "__main__":
    main()
