"""Make detectron2 importable on a machine that reaches only the package registries.

detectron2 has no usable wheel on PyPI. This step is idempotent:

* if ``import detectron2`` already works (for example an upstream build from its git repository,
  with or without compiled ops), it is kept and nothing is installed;
* otherwise the sdist ``pb1-detectron2==0.6`` is downloaded, its C++/CUDA ``ext_modules`` (whose
  sources the sdist lacks) are dropped from ``setup.py``, and it is installed as pure Python.

The ops that would have been compiled are replaced at import time by ``semask.compat``.
Run it with the interpreter of the environment to install into:
``python tools/install_detectron2.py``.
"""

import argparse
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

SDIST_REQUIREMENT = "pb1-detectron2==0.6"
SDIST_DIR_NAME = "pb1-detectron2-0.6"
# Lines of the sdist's setup.py that need the missing C++ sources or pin a formatter we don't use.
SETUP_LINES_TO_DROP = (
    "    ext_modules=get_extensions(),\n",
    '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n',
)

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class InstallError(RuntimeError):
    """Raised when detectron2 could not be installed; nothing was installed."""


def run_quietly(cmd: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(cmd), capture_output=True, text=True)


def detectron2_location() -> Optional[str]:
    """Where an importable detectron2 lives, or None if there is none."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None:
        return None
    return str(spec.origin or spec.submodule_search_locations)


def download_sdist(dest: Path, run: Runner) -> Path:
    """Download the detectron2 0.6 sdist into ``dest`` and return the archive path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-binary", ":all:", "--dest", str(dest), SDIST_REQUIREMENT]
    result = run(cmd)
    archives = sorted(dest.glob(f"{SDIST_DIR_NAME}.tar.gz"))
    if result.returncode != 0 or not archives:
        tail = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-5:])
        raise InstallError(
            f"could not download {SDIST_REQUIREMENT} from the package registry "
            f"(pip exit code {result.returncode}); is PyPI reachable?\n{tail}"
        )
    return archives[0]


def strip_extensions(setup_py: Path) -> None:
    """Remove the C++/CUDA extension build from the sdist's ``setup.py``, in place."""
    text = setup_py.read_text()
    for line in SETUP_LINES_TO_DROP:
        if line not in text:
            raise InstallError(f"{setup_py}: expected line not found: {line.strip()!r}")
        text = text.replace(line, "")
    setup_py.write_text(text)


def install_from_sdist(workdir: Path, run: Runner) -> None:
    """Download, patch and install the sdist using ``workdir`` as scratch space."""
    archive = download_sdist(workdir, run)
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    source = workdir / SDIST_DIR_NAME
    strip_extensions(source / "setup.py")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    result = run(cmd + [str(source)])
    if result.returncode != 0:
        tail = "\n".join((result.stderr or "").strip().splitlines()[-5:])
        raise InstallError(f"pip could not install the patched {SDIST_DIR_NAME}:\n{tail}")


def ensure_detectron2(run: Optional[Runner] = None) -> str:
    """Install detectron2 unless one is importable; return a one-line description of what was done.

    ``run`` executes pip commands (default: :func:`run_quietly`); tests pass a fake registry.
    """
    location = detectron2_location()
    if location is not None:
        return f"detectron2 already importable from {location}; keeping it"
    with tempfile.TemporaryDirectory(prefix="semask-d2-") as tmp:
        install_from_sdist(Path(tmp), run or run_quietly)
    importlib.invalidate_caches()
    location = detectron2_location()
    if location is None:
        raise InstallError("pip reported success but detectron2 is still not importable")
    return f"installed detectron2 0.6 (pure Python) at {location}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        print(ensure_detectron2())
    except InstallError as err:
        print(f"install_detectron2: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
