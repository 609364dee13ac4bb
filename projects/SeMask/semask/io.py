"""Atomic file writes: a crash or a reader never sees a half-written output or checkpoint.

:func:`atomic_path` gives a temporary to write to; :func:`atomic_open` opens it as a file;
:class:`AtomicWritePathManager` makes every ``open(path, "w"/"wb")`` of a PathManager atomic.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, List, Union

# Marks the temporaries of atomic_path: hidden ".<name>.<random>.partial<suffix>" files.
PARTIAL_MARKER = ".partial"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers pick the same format);
    when the block succeeds it replaces ``path`` in one step, otherwise it is deleted and
    ``path`` is left as it was.

    The temporary is hidden and marked (``.<name>.<random>.partial<suffix>``), so no reader takes
    it for a finished file and :func:`remove_partial_files` can clean up after a killed process.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=PARTIAL_MARKER + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: Union[str, os.PathLike], mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode, **kwargs)`` for writing, through :func:`atomic_path`: the file is
    written as a temporary that replaces ``path`` once the block succeeds and is closed."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as file:
        yield file


class AtomicWritePathManager:
    """An iopath PathManager whose ``open`` of a local file for writing (a mode with ``w``)
    is :func:`atomic_open`; every other call (reads, appends, URLs, ``ls``, ``rm``, ...) goes to
    the wrapped manager ``base``. Use its ``open`` in a ``with`` block."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any) -> Any:
        if "w" in mode and "://" not in str(path):
            return atomic_open(path, mode, buffering=buffering, **kwargs)
        return self.base.open(path, mode, buffering, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def is_partial_file(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is named like a temporary of :func:`atomic_path`."""
    name = Path(path).name
    return name.startswith(".") and PARTIAL_MARKER in name


def remove_partial_files(folder: Union[str, os.PathLike]) -> List[Path]:
    """Delete the temporaries that interrupted :func:`atomic_path` writes left in ``folder``
    (not its subfolders) and return their paths; a missing folder has none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if is_partial_file(path) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
