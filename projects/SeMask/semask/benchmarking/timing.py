"""Wall-clock timing with alternation, peak memory, and the machine's matmul rate."""

import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Mapping

import torch

from ..modeling.onednn_linear import ONEDNN, matmul


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    runs: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    device: torch.device,
) -> Dict[str, List[float]]:
    """Seconds of each of ``runs`` over ``repeats`` rounds after ``warmup`` untimed rounds.

    Every round runs each callable once in turn (A B A B ...), so that a change in the machine's
    load hits all of them alike.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for round_index in range(warmup + repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def summarize(seconds: List[float]) -> Dict[str, object]:
    """``{"median", "min", "max"}`` in milliseconds and every timed ``runs`` value."""
    runs = [s * 1e3 for s in seconds]
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def peak_rss_mb() -> float:
    """The largest resident set size this process has had so far, in MiB (Linux: ru_maxrss is in
    KiB; macOS: bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def matmul_rate(
    *, size: int = 1024, repeats: int = 5, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> float:
    """Achieved GFLOP/s of a [size, size] x [size, size] product (2 size^3 flops), the median over
    ``repeats`` runs after one warm-up, with the current ``torch.get_num_threads()``: the
    product the model's linear layers use by default (:func:`.onednn_linear.matmul`: oneDNN
    for float32 on the CPU, where MKL's ``torch.matmul`` can be half as fast, e.g. on AMD CPUs
    with AVX-512; ``torch.mm`` otherwise)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device, dtype)
    b = torch.randn(size, size, generator=gen).to(device, dtype)
    seconds = alternate(
        {"matmul": lambda: matmul(a, b, ONEDNN)},
        repeats=repeats,
        warmup=1,
        device=torch.device(device),
    )["matmul"]
    return 2 * size**3 / statistics.median(seconds) / 1e9
