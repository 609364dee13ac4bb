"""Mutation check: plant one known bug at a time in the source, run the fast tests, restore.

Each mutation replaces one exact piece of text in one file. The file is restored (bytes and
modification time) after every run, also on Ctrl-C or SIGTERM. A mutation is "killed" when at
least one test fails (or errors), "survived" when all pass. The table names the first failing
test of each mutation.

    python tools/mutation_check.py                      # every mutation, all fast tests
    python tools/mutation_check.py --only config-no-object-weight-1.0 matcher-swap-class-mask
    python tools/mutation_check.py -- tests/test_matcher_by_hand.py tests/test_config_defaults.py
    python tools/mutation_check.py --list

Arguments after ``--`` go to pytest (test files or ``-k`` expressions: a subset runs faster);
``-m "not slow" -x`` is always passed. Run it from a clean work tree: it edits files in place.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "projects/SeMask/semask"


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str
    new: str


MUTATIONS = [
    Mutation(
        "matcher-swap-class-mask",
        f"{PACKAGE}/modeling/matcher.py",
        "self.cost_class * cost_class\n            + self.cost_mask * cost_mask",
        "self.cost_mask * cost_class\n            + self.cost_class * cost_mask",
    ),
    Mutation(
        "criterion-drop-no-object-weight",
        f"{PACKAGE}/modeling/criterion.py",
        "F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)",
        "F.cross_entropy(logits.transpose(1, 2), target_classes)",
    ),
    Mutation(
        "config-no-object-weight-1.0",
        f"{PACKAGE}/config.py",
        "cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1",
        "cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 1.0",
    ),
    Mutation(
        "config-drop-default",
        f"{PACKAGE}/config.py",
        "    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8\n",
        "",
    ),
    Mutation(
        "builder-swap-class-mask",
        f"{PACKAGE}/modeling/meta_arch/semask_maskformer.py",
        "cost_class=mf.CLASS_WEIGHT,\n        cost_mask=mf.MASK_WEIGHT,",
        "cost_class=mf.MASK_WEIGHT,\n        cost_mask=mf.CLASS_WEIGHT,",
    ),
    Mutation(
        "dice-loss-without-smoothing",
        f"{PACKAGE}/modeling/criterion.py",
        "(1 - (numerator + 1) / (denominator + 1)).sum() / num_masks",
        "(1 - numerator / denominator.clamp(min=1e-6)).sum() / num_masks",
    ),
    Mutation(
        "prior-loss-counts-ignored-pixels",
        f"{PACKAGE}/modeling/criterion.py",
        "return total / (sem_seg != ignore_value).sum().clamp(min=1)",
        "return total / sem_seg.numel()",
    ),
    Mutation(
        "attention-mask-inverted",
        f"{PACKAGE}/modeling/transformer_decoder/mask2former_decoder.py",
        "attn_mask.sigmoid().flatten(2) < 0.5",
        "attn_mask.sigmoid().flatten(2) >= 0.5",
    ),
    Mutation(
        "instance-score-without-mask-score",
        f"{PACKAGE}/modeling/meta_arch/inference.py",
        "result.scores = scores * mask_scores",
        "result.scores = scores",
    ),
]

FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def apply(mutation: Mutation) -> Tuple[Path, bytes, os.stat_result]:
    """Write the mutated file; return what ``restore`` needs. The old text must occur once."""
    path = REPO_ROOT / mutation.path
    original = path.read_bytes()
    text = original.decode()
    count = text.count(mutation.old)
    if count != 1:
        raise SystemExit(
            f"mutation {mutation.name}: expected the text once in {mutation.path}, found it "
            f"{count} times (the source changed: update MUTATIONS in tools/mutation_check.py)"
        )
    stat = path.stat()
    path.write_text(text.replace(mutation.old, mutation.new))
    return path, original, stat


def restore(path: Path, original: bytes, stat: os.stat_result) -> None:
    """Put back the original bytes and modification time (so cached bytecode stays valid)."""
    path.write_bytes(original)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def run_tests(pytest_args: Sequence[str], timeout: float) -> Tuple[str, Optional[str]]:
    """Run the fast tests; return ("killed" | "survived" | "timeout", first failing test)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT / "projects" / "SeMask"), env.get("PYTHONPATH")) if p
    )
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p"]
    command += ["no:cacheprovider", *(pytest_args or ["tests"])]
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", None
    if done.returncode == 0:
        return "survived", None
    failed = FAILED_LINE.search(done.stdout)
    return "killed", failed.group(1) if failed else f"pytest exit {done.returncode}"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutation")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:36s} {m.path}")
        return 0
    unknown = sorted(set(args.only or []) - set(by_name))
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}; --list shows them")
    selected = [by_name[n] for n in args.only] if args.only else MUTATIONS
    signal.signal(signal.SIGTERM, _raise_interrupt)

    rows = []
    for mutation in selected:
        start = time.monotonic()
        path, original, stat = apply(mutation)
        try:
            result, first = run_tests(args.pytest_args, args.timeout)
        finally:
            restore(path, original, stat)
        rows.append((mutation.name, result, first or "-", time.monotonic() - start))
        print(f"{mutation.name}: {result} ({first or 'no failing test'})", flush=True)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'mutation':{width}s}  {'result':8s}  {'seconds':>7s}  first failing test")
    for name, result, first, seconds in rows:
        print(f"{name:{width}s}  {result:8s}  {seconds:7.1f}  {first}")
    return 1 if any(r[1] != "killed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
