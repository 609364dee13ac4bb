"""Pure-Python stand-in for detectron2's compiled extension ``detectron2._C``.

``tools/install_detectron2.py`` copies this file into the sdist of detectron2 0.6 (which lacks the
C++/CUDA sources) as ``detectron2/_C.py`` and appends the ``SEMASK_PATCH_LEVEL`` marker. Importing
it works; calling one of the compiled ops raises :class:`MissingCompiledOpError` naming the op.
SeMask needs none of them (its deformable ops are pure PyTorch). The build queries of detectron2's
environment report (``collect_env_info``, printed by ``default_setup``) answer "not compiled".
"""

from typing import Any, Callable

NOT_COMPILED = "not compiled (pure-Python detectron2 0.6, see SeMask's tools/install_detectron2.py)"


class MissingCompiledOpError(RuntimeError):
    """A compiled detectron2 op was called, but detectron2 was installed without its C++ ops."""


def get_compiler_version() -> str:
    return NOT_COMPILED


def get_cuda_version() -> str:
    return NOT_COMPILED


def has_cuda() -> bool:
    return False


def __getattr__(name: str) -> Callable[..., Any]:
    """Any other attribute is a compiled op: a function that raises when called."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def missing_op(*args: Any, **kwargs: Any) -> Any:
        raise MissingCompiledOpError(
            f"detectron2._C.{name} is a compiled op, and this detectron2 was installed without "
            "its C++/CUDA extension. Build detectron2 from its git repository (see README.md, "
            "'Install') to use it."
        )

    missing_op.__name__ = name
    return missing_op
