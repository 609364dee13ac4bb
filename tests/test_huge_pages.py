"""semask.huge_pages: importing semask asks PyTorch's CPU allocator for huge pages, unless the
environment says otherwise, and large tensors then take far fewer page faults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from semask.huge_pages import THP_VARIABLE, default_to_huge_pages

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


def _child(value):
    """(THP_MEM_ALLOC_ENABLE after importing semask, minor page faults of the 64 MiB fill)."""
    env = {k: v for k, v in os.environ.items() if k != THP_VARIABLE}
    if value is not None:
        env[THP_VARIABLE] = value
    run = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    variable, faults = run.stdout.split()
    return variable, int(faults)


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
    assert small_faults >= 16 << 20 >> 12  # one fault per 4 KiB page of the 64 MiB
    assert huge_faults < small_faults / 8, (huge_faults, small_faults)
