"""SeMask (Semantically Masked Transformers) for Detectron2.

Importing this package registers SeMask's backbones, heads and meta-architectures in detectron2's
registries. It patches nothing, so it may come before or after detectron2's own modules. With a
detectron2 that has no ``detectron2._C`` (neither compiled nor the stand-in that
``tools/install_detectron2.py`` installs), it stops with an error that says how to install one.
It also sets two process-wide CPU memory defaults (:mod:`semask.cpu_memory`): large tensors on
transparent huge pages (``THP_MEM_ALLOC_ENABLE=0`` keeps 4 KiB pages) and, with glibc, freed memory
kept for reuse instead of given back (``SEMASK_RETAIN_CPU_MEMORY=0`` leaves ``malloc`` alone).
"""

import re

from .cpu_memory import default_to_huge_pages, retain_freed_memory

MISSING_C_EXTENSION = re.compile(r"cannot import name '_C' from 'detectron2'|detectron2\._C\b")

default_to_huge_pages()  # before this package or its user allocates a large tensor
retain_freed_memory()

try:
    from . import modeling  # noqa: F401  (registers components)
except ImportError as err:
    if not MISSING_C_EXTENSION.search(str(err)):
        raise
    raise ImportError(
        f"{err}: this detectron2 has neither its compiled ops nor SeMask's stand-in for them; "
        "run `make env` (tools/install_detectron2.py) to install a patched detectron2 0.6 (it "
        "keeps any detectron2 but the PyPI sdist: `pip uninstall` a build without its C++ ops)"
    ) from err

from .config import add_semask_config  # noqa: E402  (after the check above)

__all__ = ["add_semask_config"]
