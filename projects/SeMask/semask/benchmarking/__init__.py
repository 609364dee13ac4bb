"""Benchmark helpers shared by ``tools/benchmark.py`` and ``tools/analyze_model.py``: synthetic
mapper-shaped inputs, alternating timings, peak memory, the machine's matmul rate and the
transformers Mask2Former peer."""

from .agreement import score_agreement
from .inputs import synthetic_samples
from .runner import format_table, machine_info, run_case, write_report
from .subjects import DTYPES, Settings, Subject, SubjectSpec, build_subject
from .timing import alternate, matmul_rate, peak_rss_mb, summarize

__all__ = [
    "DTYPES",
    "Settings",
    "Subject",
    "SubjectSpec",
    "alternate",
    "build_subject",
    "format_table",
    "machine_info",
    "matmul_rate",
    "peak_rss_mb",
    "run_case",
    "score_agreement",
    "summarize",
    "synthetic_samples",
    "write_report",
]
