"""SeMask (Semantically Masked Transformers) for Detectron2.

Importing this package applies :mod:`semask.compat` (before anything else touches detectron2) and
registers SeMask's backbones, heads and meta-architectures in detectron2's registries.
"""

from . import compat

compat.apply()

from . import modeling  # noqa: E402,F401  (registers components)
from .config import add_semask_config  # noqa: E402

__all__ = ["add_semask_config", "compat"]
