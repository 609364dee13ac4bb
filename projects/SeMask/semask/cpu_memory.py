"""How this process gets memory for large CPU tensors: fewer fresh pages, each a page fault.

Every fresh page a process touches costs a page fault, and on the virtual machines measured for
this project a 4 KiB fault cost about 2-4 us: one 512 x 512 eval of SeMask Swin-T Mask2Former
touched about 80,000 fresh pages, a training step about 190,000. Importing ``semask`` sets two
process-wide defaults against that, each only where the environment has not chosen already:

* **Huge pages** (:func:`default_to_huge_pages`). PyTorch's CPU allocator asks the kernel for
  2 MiB pages for tensors of 2 MiB and more when ``THP_MEM_ALLOC_ENABLE`` is 1 (and the kernel's
  transparent huge pages are not ``never``), which turns 512 such faults into one. PyTorch reads
  the variable once, at the process's first allocation of 2 MiB or more, so it takes effect when
  ``semask`` is imported before the first large tensor. ``THP_MEM_ALLOC_ENABLE=0`` turns it off.
* **Freed memory kept for reuse** (:func:`retain_freed_memory`). glibc's ``malloc`` maps every
  block above a threshold (at most 32 MiB) anew and unmaps it when freed, and gives a free heap
  top back to the kernel, so tensors allocated per image (mask logits, scores, activations)
  start from fresh pages each time. With glibc, ``mallopt`` then makes ``malloc`` take every block
  from its heap and never trim it: after the first image or two the process reuses the pages it has.
  The cost: memory freed after a peak stays with the process (its peak is not higher).
  ``SEMASK_RETAIN_CPU_MEMORY=0``, or any of glibc's own malloc settings in the environment
  (``MALLOC_*_`` variables, ``glibc.malloc`` tunables), leaves ``malloc`` as it is.
"""

import ctypes
import os
from typing import Mapping, Optional

THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"
RETAIN_VARIABLE = "SEMASK_RETAIN_CPU_MEMORY"
GLIBC_MALLOC_VARIABLES = (
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_TRIM_THRESHOLD_",
)
# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = -1  # as a trim threshold: no trimming at all


def default_to_huge_pages() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the environment sets it already; True when large CPU
    tensors are then asked to live on huge pages."""
    os.environ.setdefault(THP_VARIABLE, "1")
    return os.environ[THP_VARIABLE] == "1"


def malloc_left_alone(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` turns :func:`retain_freed_memory` off: ``SEMASK_RETAIN_CPU_MEMORY``
    other than 1, or a glibc malloc setting of the user's."""
    return (
        environ.get(RETAIN_VARIABLE, "1") != "1"
        or any(name in environ for name in GLIBC_MALLOC_VARIABLES)
        or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
    )


def glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (the only one whose ``mallopt`` this module knows)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return None
    return ctypes.CDLL("libc.so.6") if version.startswith("glibc") else None


def retain_freed_memory() -> bool:
    """Make glibc's ``malloc`` serve every block from its heap (no ``mmap``) and never give the
    heap back, unless :func:`malloc_left_alone`; True when both settings took."""
    if malloc_left_alone(os.environ):
        return False
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
