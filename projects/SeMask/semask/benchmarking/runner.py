"""Run benchmark cases: alternating timings in this process, peak memory in fresh processes."""

import functools
import json
import multiprocessing
import os
import platform
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..io import atomic_path
from .agreement import score_agreement
from .subjects import Settings, Subject, SubjectSpec, build_subject, subject_info
from .timing import alternate, peak_rss_mb, summarize

MODES = ("eval", "train")


# /proc/cpuinfo flags of CPUs that multiply bf16 matrices natively; without them oneDNN falls back
# to a reference bf16 path (on a 2-core AVX2 EPYC: 0.6 GFLOP/s against 28 in float32, per thread).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_model_and_flags() -> Tuple[str, List[str]]:
    """The CPU's model name and its feature flags (from /proc/cpuinfo where there is one)."""
    fields: Dict[str, str] = {}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first CPU's
    model = fields.get("model name") or platform.processor() or platform.machine()
    return model, fields.get("flags", "").split()


def machine_info(device: str) -> Dict[str, object]:
    """CPU model, core count, torch version, whether the CPU has native bf16 matrix products
    (``cpu_native_bf16``) and the accelerator's name."""
    cpu, flags = cpu_model_and_flags()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_native_bf16": any(flag in flags for flag in NATIVE_BF16_FLAGS),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def measure_memory(spec: SubjectSpec, settings: Settings, mode: str, warmup: int) -> float:
    """Peak memory in MiB of building ``spec`` and running ``mode`` ``warmup + 1`` times: the
    process's peak RSS on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA."""
    torch.set_num_threads(settings.threads)
    subject = build_subject(spec, settings)
    cuda = settings.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(settings.device)
    for _ in range(warmup + 1):
        subject.infer() if mode == "eval" else subject.train_step()
    if cuda:
        return torch.cuda.max_memory_allocated(settings.device) / 2**20
    return peak_rss_mb()


def _memory_child(spec, settings, mode, warmup, queue) -> None:
    try:
        queue.put(("ok", measure_memory(spec, settings, mode, warmup)))
    except BaseException as error:  # reported to the parent, which raises it
        queue.put(("error", f"{type(error).__name__}: {error}"))


def memory_in_fresh_process(spec: SubjectSpec, settings: Settings, mode: str, warmup: int) -> float:
    """:func:`measure_memory` in a new (spawned) Python process, so the peak is this case's alone,
    not whatever the measuring process reached before."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_memory_child, args=(spec, settings, mode, warmup, queue), daemon=True
    )
    process.start()
    status, value = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"memory measurement of {spec.kind} {mode} ({settings.label}): {value}")
    return value


@functools.lru_cache(maxsize=2)
def float32_eager_scores(spec: SubjectSpec, device: str) -> torch.Tensor:
    """The semantic scores (on the CPU) of a freshly built float32 eager, contiguous model of
    ``spec`` on ``device``; kept for the next cases of the same run, which share the reference."""
    reference = build_subject(spec, Settings(device=device, threads=torch.get_num_threads()))
    return reference.scores_fn(reference.infer()).cpu()


def agreement_with_float32_eager(
    subject: Subject, spec: SubjectSpec, settings: Settings, reference_device: str
) -> Optional[Dict[str, float]]:
    """:func:`score_agreement` of one inference of ``subject`` (as the case runs it) against
    :func:`float32_eager_scores` on ``reference_device`` (the same seeded weights or
    ``MODEL.WEIGHTS``, the same inputs). None for the float32 eager case on that device itself,
    and for outputs without semantic scores."""
    if settings == Settings(device=reference_device, threads=settings.threads):
        return None
    scores = subject.scores_fn(subject.infer())
    if scores is None:
        return None
    return score_agreement(scores.cpu(), float32_eager_scores(spec, reference_device))


def run_case(
    specs: Sequence[SubjectSpec],
    settings: Settings,
    *,
    iters: int,
    warmup: int,
    modes: Sequence[str] = MODES,
    memory: bool = True,
    reference_device: Optional[str] = None,
) -> List[Dict[str, object]]:
    """Time every subject of ``specs`` in each mode, alternating subjects; one result per
    (subject, mode) with latency (ms), throughput (images/s), peak memory (MiB) and, in eval
    mode, :func:`agreement_with_float32_eager` on ``reference_device`` (default: the case's
    device), measured after the timings."""
    torch.set_num_threads(settings.threads)
    subjects = {spec.kind: build_subject(spec, settings) for spec in specs}
    device = torch.device(settings.device)
    results = []
    for mode in modes:
        runs = {
            kind: (subject.infer if mode == "eval" else subject.train_step)
            for kind, subject in subjects.items()
        }
        # the first call of each, one of the warm-up rounds, is timed on its own: with
        # torch.compile it includes the compilation
        first = alternate(runs, repeats=1, warmup=0, device=device) if warmup else {}
        times = alternate(runs, repeats=iters, warmup=max(warmup - 1, 0), device=device)
        for spec in specs:
            latency = summarize(times[spec.kind])
            if first:
                latency["first_run"] = first[spec.kind][0] * 1e3
            result = {
                "model": spec.kind,
                "mode": mode,
                **settings.__dict__,
                "case": settings.label,
                **subject_info(subjects[spec.kind]),
                "latency_ms": latency,
                "throughput_img_s": spec.batch / (latency["median"] / 1e3),
                "peak_memory_mb": None,
                "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "peak_rss",
                "agreement": None,
            }
            if memory:
                result["peak_memory_mb"] = memory_in_fresh_process(spec, settings, mode, warmup)
            if mode == "eval":
                result["agreement"] = agreement_with_float32_eager(
                    subjects[spec.kind], spec, settings, reference_device or settings.device
                )
            results.append(result)
    return results


def ratios(results: Sequence[Dict[str, object]], baseline: str) -> List[Dict[str, object]]:
    """Median latency of each other model over ``baseline``'s, per case and mode."""
    base = {
        (r["case"], r["mode"]): r["latency_ms"]["median"] for r in results if r["model"] == baseline
    }
    return [
        {
            "case": r["case"],
            "mode": r["mode"],
            "model": r["model"],
            "baseline": baseline,
            "latency_ratio": r["latency_ms"]["median"] / base[(r["case"], r["mode"])],
        }
        for r in results
        if r["model"] != baseline and (r["case"], r["mode"]) in base
    ]


def parity_failures(results: Sequence[Dict[str, object]], tolerance: float) -> List[str]:
    """One line per float32 result whose scores are further than ``tolerance`` (relative error)
    from the float32 eager reference: compiled, channels-last or on another device."""
    return [
        f"{r['case']} {r['model']}: relative error {r['agreement']['relative_error']:.2e}"
        for r in results
        if r["dtype"] == "float32"
        and r["agreement"] is not None
        and r["agreement"]["relative_error"] > tolerance
    ]


def format_table(results: Sequence[Dict[str, object]]) -> str:
    """A fixed-width text table of ``results``."""
    header = (
        f"{'case':<34} {'model':<7} {'mode':<5} {'median ms':>10} {'min ms':>10} {'max ms':>10} "
        f"{'first ms':>10} {'img/s':>8} {'peak MiB':>9} {'agree %':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        latency = r["latency_ms"]
        memory = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        first = f"{latency['first_run']:.1f}" if "first_run" in latency else "-"
        agreement = r["agreement"]
        agree = "-" if agreement is None else f"{100 * agreement['argmax_agreement']:.2f}"
        lines.append(
            f"{r['case']:<34} {r['model']:<7} {r['mode']:<5} {latency['median']:>10.1f} "
            f"{latency['min']:>10.1f} {latency['max']:>10.1f} {first:>10} "
            f"{r['throughput_img_s']:>8.2f} {memory:>9} {agree:>8}"
        )
    return "\n".join(lines)


def write_report(path: str, report: Dict[str, object]) -> None:
    """``report`` as indented JSON at ``path``, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
