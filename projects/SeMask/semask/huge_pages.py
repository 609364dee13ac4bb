"""Transparent huge pages for PyTorch's large CPU tensors.

Every fresh page a process touches costs a page fault, and on the virtual machines measured for
this project a 4 KiB fault cost about 2-4 us: one 512 x 512 eval of SeMask Swin-T Mask2Former
touched about 80,000 fresh pages (mostly the [Q, H, W] mask logits and the [K, H, W] scores, each
allocated anew per image), a training step about 190,000. PyTorch's CPU allocator asks the kernel
for 2 MiB pages for tensors of 2 MiB and more when the environment variable
``THP_MEM_ALLOC_ENABLE`` is 1 (and the kernel's transparent huge pages are not ``never``), which
turns 512 such faults into one.

PyTorch reads the variable once, at the process's first allocation of 2 MiB or more; importing
``semask`` sets it (unless it is set already), so it takes effect when ``semask`` is imported
before the first large tensor. ``THP_MEM_ALLOC_ENABLE=0`` turns it off.
"""

import os

THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def default_to_huge_pages() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the environment sets it already; True when large CPU
    tensors are then asked to live on huge pages."""
    os.environ.setdefault(THP_VARIABLE, "1")
    return os.environ[THP_VARIABLE] == "1"
