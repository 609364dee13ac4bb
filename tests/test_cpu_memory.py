"""semask.cpu_memory: importing semask asks PyTorch's CPU allocator for huge pages and makes glibc's
malloc keep freed memory for reuse, unless the environment says otherwise; large tensors then take
far fewer page faults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from semask.cpu_memory import (
    GLIBC_MALLOC_VARIABLES,
    RETAIN_VARIABLE,
    THP_VARIABLE,
    default_to_huge_pages,
    glibc,
    malloc_left_alone,
)

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# Imports semask, then prints the variable and the page faults of filling a fresh 64 MiB tensor.
CHILD = """
import os, resource
import semask, torch
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
torch.ones(16 << 20)
print(os.environ["THP_MEM_ALLOC_ENABLE"], faults() - before)
"""

# Imports semask, then fills and frees a fresh 64 MiB tensor REFILLS times, printing each fill's
# page faults. With freed memory kept, the first fill or two take fresh pages: whether the second
# fits the first's freed place depends on where the heap starts (posix_memalign asks for a little
# more than it returns), so the second or the third may be the last fresh one. Later fills reuse.
REFILLS = 6
REFILL_CHILD = f"""
import resource
import semask, torch
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({REFILLS}):
    before = faults()
    torch.ones(16 << 20)
    print(faults() - before)
"""
PAGES_OF_64_MIB = (64 << 20) >> 12


def _run(code, **variables):
    """stdout of ``code`` in a fresh interpreter, with ``variables`` (None: unset) in place of
    this process's values and glibc's malloc variables unset."""
    env = {k: v for k, v in os.environ.items() if k not in GLIBC_MALLOC_VARIABLES}
    env.pop("GLIBC_TUNABLES", None)
    for name, value in variables.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def _child(value):
    """(THP_MEM_ALLOC_ENABLE after importing semask, minor page faults of the 64 MiB fill)."""
    variable, faults = _run(CHILD, **{THP_VARIABLE: value}).split()
    return variable, int(faults)


def _refill_faults(retain):
    """Page faults of each of REFILL_CHILD's fills, with SEMASK_RETAIN_CPU_MEMORY ``retain``."""
    faults = _run(REFILL_CHILD, **{THP_VARIABLE: "0", RETAIN_VARIABLE: retain}).split()
    assert len(faults) == REFILLS, faults
    return [int(count) for count in faults]


def test_default_keeps_a_value_the_user_set(monkeypatch):
    monkeypatch.setenv(THP_VARIABLE, "0")
    assert default_to_huge_pages() is False and os.environ[THP_VARIABLE] == "0"
    monkeypatch.delenv(THP_VARIABLE)
    assert default_to_huge_pages() is True and os.environ[THP_VARIABLE] == "1"


def _huge_pages_available():
    return sys.platform == "linux" and THP_MODE.exists() and "[never]" not in THP_MODE.read_text()


@pytest.mark.skipif(not _huge_pages_available(), reason="no transparent huge pages here")
def test_importing_semask_puts_large_tensors_on_huge_pages():
    default_variable, huge_faults = _child(None)
    off_variable, small_faults = _child("0")
    assert (default_variable, off_variable) == ("1", "0")
    # about one fault per 4 KiB page; a few of the block's first pages may already be in the heap
    assert small_faults > PAGES_OF_64_MIB * 15 / 16, small_faults
    assert huge_faults < small_faults / 8, (huge_faults, small_faults)


def test_malloc_is_left_alone_where_the_environment_chooses():
    assert not malloc_left_alone({})
    assert not malloc_left_alone({RETAIN_VARIABLE: "1", "GLIBC_TUNABLES": "glibc.pthread.x=1"})
    assert malloc_left_alone({RETAIN_VARIABLE: "0"})
    assert malloc_left_alone({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert malloc_left_alone({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=8"})


@pytest.mark.skipif(glibc() is None, reason="malloc is not glibc's here")
def test_importing_semask_reuses_freed_memory():
    """4 KiB pages in both children, so that the faults count pages."""
    retained = _refill_faults(retain=None)
    returned = _refill_faults(retain="0")
    assert min(returned) >= PAGES_OF_64_MIB, returned  # every fill on fresh pages
    assert max(retained[3:]) < PAGES_OF_64_MIB / 16, (retained, returned)
