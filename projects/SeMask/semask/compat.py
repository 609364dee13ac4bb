"""Accommodations that let detectron2 0.6 (PyPI sdist, pure Python) run on current libraries.

``semask/__init__.py`` calls :func:`apply` before anything imports detectron2's submodules. Each
accommodation is applied only where the installed library lacks what detectron2 needs, so an
upstream detectron2 built from its git repository (with its compiled ``detectron2._C``) and
older numpy/Pillow are left exactly as they are:

* ``detectron2._C``: a stand-in module whose ops raise :class:`MissingCompiledOpError`, naming
  the op, when called. SeMask itself needs none of them (its deformable ops are pure PyTorch).
  detectron2's environment report (``default_setup``) works and says nothing was compiled.
* ``np.int``, ``np.float``, ``np.bool``: removed in numpy 1.24, still used by detectron2 0.6.
* ``PIL.Image.LINEAR``: removed in Pillow 10, still used by detectron2 0.6.
* ``MapDataset`` fallback: when a mapper returns None (a skipped sample), detectron2 0.6 draws
  another index with ``random.sample`` from a set, which Python 3.11 refuses (TypeError); its
  generator is given one that samples from the sorted set.
"""

import importlib.util
import random
import sys
import types
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from PIL import Image

C_EXTENSION = "detectron2._C"
NUMPY_ALIASES: Dict[str, type] = {"int": int, "float": float, "bool": bool}
NOT_COMPILED = "not compiled (pure-Python detectron2, semask.compat stand-in)"


class MissingCompiledOpError(RuntimeError):
    """A compiled detectron2 op was called, but detectron2 was installed without its C++ ops."""


class MissingCompiledOps(types.ModuleType):
    """Stand-in for ``detectron2._C``: every op raises when called; the build queries of
    detectron2's environment report (``collect_env_info``) answer that nothing was compiled."""

    @staticmethod
    def get_compiler_version() -> str:
        return NOT_COMPILED

    @staticmethod
    def get_cuda_version() -> str:
        return NOT_COMPILED

    @staticmethod
    def has_cuda() -> bool:
        return False

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def missing_op(*args: Any, **kwargs: Any) -> Any:
            raise MissingCompiledOpError(
                f"{C_EXTENSION}.{name} is a compiled op, and this detectron2 was installed "
                "without its C++/CUDA extension. Build detectron2 from its git repository "
                "(see README.md) to use it."
            )

        missing_op.__name__ = name
        return missing_op


def install_c_extension_stand_in(
    find_spec: Callable[[str], Optional[object]] = importlib.util.find_spec,
    modules: Optional[Dict[str, types.ModuleType]] = None,
) -> bool:
    """Register the ``detectron2._C`` stand-in if no compiled extension exists. True if added."""
    modules = sys.modules if modules is None else modules
    if C_EXTENSION in modules or find_spec("detectron2") is None:
        return False
    if find_spec(C_EXTENSION) is not None:
        return False
    modules[C_EXTENSION] = MissingCompiledOps(C_EXTENSION)
    return True


def add_numpy_aliases(numpy_module: Any = np) -> List[str]:
    """Restore the removed numpy scalar aliases; return the names that were added."""
    added = [name for name in NUMPY_ALIASES if name not in vars(numpy_module)]
    for name in added:
        setattr(numpy_module, name, NUMPY_ALIASES[name])
    return added


def add_pillow_constants(image_module: Any = Image) -> List[str]:
    """Restore ``Image.LINEAR`` (an alias of bilinear resampling); return the names added."""
    if hasattr(image_module, "LINEAR"):
        return []
    image_module.LINEAR = image_module.BILINEAR
    return ["LINEAR"]


class SetSamplingRandom(random.Random):
    """``random.Random`` whose ``sample`` also accepts a set (sampled in sorted order)."""

    def sample(self, population: Any, k: int, **kwargs: Any) -> List[Any]:
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def fix_map_dataset_fallback() -> bool:
    """Let detectron2's ``MapDataset`` draw a fallback index on Python >= 3.11. True if fixed."""
    if sys.version_info < (3, 11):
        return False
    from detectron2.data.common import MapDataset

    if getattr(MapDataset.__init__, "_semask_fixed", False):
        return False
    original_init = MapDataset.__init__

    def __init__(self: Any, dataset: Any, map_func: Any) -> None:
        original_init(self, dataset, map_func)
        if type(self._rng) is random.Random:
            self._rng = SetSamplingRandom(42)

    __init__._semask_fixed = True  # type: ignore[attr-defined]
    MapDataset.__init__ = __init__
    return True


def apply() -> Dict[str, Any]:
    """Apply every accommodation the installed libraries need; return what was applied."""
    return {
        "c_extension_stand_in": install_c_extension_stand_in(),
        "numpy_aliases": add_numpy_aliases(),
        "pillow_constants": add_pillow_constants(),
        "map_dataset_fallback": fix_map_dataset_fallback(),
    }
