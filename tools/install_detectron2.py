"""Make detectron2 importable on a machine that reaches only the package registries.

detectron2 has no usable wheel on PyPI. This step is idempotent:

* an importable detectron2 that is not the PyPI sdist (for example an upstream build from its git
  repository, with or without compiled ops) is kept and nothing is installed;
* otherwise the sdist ``pb1-detectron2==0.6`` is downloaded, patched (below) and installed as pure
  Python. An install of it that lacks these patches, or has those of another ``PATCH_LEVEL`` (an
  older checkout), is replaced; one with them is kept.

The patches, made once here rather than at every import, let detectron2 0.6 run on current
libraries in any import order:

* its C++/CUDA ``ext_modules`` (whose sources the sdist lacks) are dropped from ``setup.py``;
* ``detectron2/_C.py`` is the pure-Python stand-in ``tools/detectron2_c_stand_in.py``: its ops
  raise a clear error naming the op, its build queries say "not compiled";
* the numpy aliases ``np.int``, ``np.float``, ``np.bool``, ``np.str`` (removed in numpy 1.24) are
  spelled ``int``, ``float``, ``bool``, ``str``, and ``Image.LINEAR`` (removed in Pillow 10)
  ``Image.BILINEAR``, its value;
* ``MapDataset``'s fallback for a skipped sample samples from the sorted set of candidates
  (``random.sample`` of a set is a TypeError on Python 3.11);
* the FutureWarning "`torch.jit.script` is deprecated" is ignored around the scripting done at
  import time, and only there. Current torch gives it at every ``torch.jit.script`` call, with no
  stack level, so it is attributed to ``torch.jit._script`` whoever calls; a filter on message and
  module would silence a user's own calls too. The calls: ``fvcore/nn/focal_loss.py`` scripts its
  two focal losses when ``fvcore.nn`` is first imported (seven calls, torch's recursion included;
  printed once per process, again after any change of the warning filters, and in every spawned
  dataloader worker), and ``detectron2/modeling/box_regression.py`` scripts two box transforms. So
  ``detectron2/__init__.py`` imports ``fvcore.nn`` under a ``catch_warnings`` that ignores that
  message, and the box transforms are scripted under the same filter. (An upstream detectron2 is
  not patched, so it still prints them; ``fvcore.nn`` imported before any detectron2 module too.)

Every patch checks how many places it changes, so a different sdist fails here, naming the file.
Run it with the interpreter of the environment to install into:
``python tools/install_detectron2.py``.
"""

import argparse
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_REQUIREMENT = f"{SDIST_NAME}=={SDIST_VERSION}"
SDIST_DIR_NAME = f"{SDIST_NAME}-{SDIST_VERSION}"
# Bump it whenever the patches below or tools/detectron2_c_stand_in.py change: installs with
# another level are then replaced by `make env` (whose stamp depends on this file).
PATCH_LEVEL = 1
PATCH_LEVEL_NAME = "SEMASK_PATCH_LEVEL"
PATCH_LEVEL_LINE = re.compile(rf"^{PATCH_LEVEL_NAME} = (\d+)$", re.MULTILINE)
STAND_IN = Path(__file__).resolve().with_name("detectron2_c_stand_in.py")
STAND_IN_TARGET = "detectron2/_C.py"
# The installed packages of the sdist (setup.py installs projects/* as detectron2.projects.*).
PACKAGE_DIRS = ("detectron2", "projects")

# The message (a regular expression) of the FutureWarning of torch.jit.script in current torch.
JIT_SCRIPT_WARNING = (
    r"`torch\.jit\.script` is deprecated\. Please switch to `torch\.compile` or `torch\.export`\."
)
QUIET_FVCORE_IMPORT = f"""
# Added by SeMask's tools/install_detectron2.py: fvcore.nn scripts two losses with torch.jit.script
# when it is first imported, and current torch warns at each call; import it here without that.
import contextlib as _contextlib
import importlib as _importlib
import warnings as _warnings


@_contextlib.contextmanager
def _jit_script_deprecation_ignored():
    with _warnings.catch_warnings():
        _warnings.filterwarnings(
            "ignore",
            r"{JIT_SCRIPT_WARNING}",
            FutureWarning,
        )
        yield


with _jit_script_deprecation_ignored():
    _importlib.import_module("fvcore.nn")
"""
QUIET_SCRIPT_HELPER = '''from detectron2 import _jit_script_deprecation_ignored


def _script(obj):
    """torch.jit.script without its deprecation warning (SeMask's tools/install_detectron2.py)."""
    with _jit_script_deprecation_ignored():
        return torch.jit.script(obj)
'''


class Edit(NamedTuple):
    """Replace ``old`` by ``new`` in the sdist's file ``path``, where it occurs ``count`` times."""

    path: str
    old: str
    new: str
    count: int = 1


class Rewrite(NamedTuple):
    """Substitute ``pattern`` by ``repl`` in the sdist's packages; ``uses``: count per file."""

    pattern: str
    repl: str
    uses: Mapping[str, int]


EDITS = (
    Edit("setup.py", "    ext_modules=get_extensions(),\n", ""),
    Edit("setup.py", '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n', ""),
    Edit(
        "detectron2/data/common.py",
        "self._rng.sample(self._fallback_candidates, k=1)",
        "self._rng.sample(sorted(self._fallback_candidates), k=1)",
    ),
    Edit(
        "detectron2/__init__.py",
        "setup_environment()\n",
        "setup_environment()\n" + QUIET_FVCORE_IMPORT,
    ),
    Edit(
        "detectron2/modeling/box_regression.py",
        "from detectron2.structures import Boxes\n",
        "from detectron2.structures import Boxes\n" + QUIET_SCRIPT_HELPER,
    ),
    Edit("detectron2/modeling/box_regression.py", "\n@torch.jit.script\n", "\n@_script\n", 2),
)
REWRITES = (
    Rewrite(
        r"\bnp\.(bool|float|int|str)\b",
        r"\1",
        {
            "detectron2/data/build.py": 2,
            "detectron2/data/datasets/pascal_voc.py": 1,
            "detectron2/evaluation/pascal_voc_evaluation.py": 2,
            "detectron2/evaluation/sem_seg_evaluation.py": 7,
            "detectron2/structures/masks.py": 3,
            "detectron2/utils/video_visualizer.py": 1,
            "detectron2/utils/visualizer.py": 3,
        },
    ),
    Rewrite(r"\bImage\.LINEAR\b", "Image.BILINEAR", {"detectron2/data/transforms/transform.py": 1}),
)

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class InstallError(RuntimeError):
    """Raised when detectron2 could not be installed; the environment was left as it was."""


class Detectron2(NamedTuple):
    """An importable detectron2: its package directory, whether it is the PyPI sdist, and the
    ``SEMASK_PATCH_LEVEL`` of its ``_C.py`` (0 when it has none)."""

    location: Path
    from_sdist: bool
    patch_level: int


def run_quietly(cmd: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(cmd), capture_output=True, text=True)


def read_patch_level(package_dir: Path) -> int:
    """The patch level marked in ``package_dir/_C.py``; 0 without the file or the marker."""
    stand_in = package_dir / "_C.py"
    match = PATCH_LEVEL_LINE.search(stand_in.read_text()) if stand_in.is_file() else None
    return int(match.group(1)) if match else 0


def installed_by_sdist(package_dir: Path, search_path: Optional[List[str]] = None) -> bool:
    """Whether ``package_dir`` is the ``detectron2`` that pb1-detectron2 0.6 installed."""
    paths = {} if search_path is None else {"path": search_path}
    for dist in importlib.metadata.distributions(**paths):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name == SDIST_NAME and dist.version == SDIST_VERSION:
            if Path(dist.locate_file("detectron2")).resolve() == package_dir.resolve():
                return True
    return False


def find_detectron2(search_path: Optional[List[str]] = None) -> Optional[Detectron2]:
    """The detectron2 that ``import detectron2`` would load (searching ``search_path`` instead of
    ``sys.path`` when given), without importing it; None if there is none."""
    if search_path is None:
        spec = importlib.util.find_spec("detectron2")
    else:
        spec = importlib.machinery.PathFinder.find_spec("detectron2", search_path)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        location = Path(list(spec.submodule_search_locations)[0])
    else:
        location = Path(str(spec.origin)).parent
    return Detectron2(
        location, installed_by_sdist(location, search_path), read_patch_level(location)
    )


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


def apply_edit(source: Path, edit: Edit) -> None:
    """Apply one :class:`Edit` to the sdist tree ``source``, in place."""
    path = source / edit.path
    text = path.read_text() if path.is_file() else ""
    found = text.count(edit.old)
    if found != edit.count:
        raise InstallError(
            f"{path}: expected {edit.count} occurrence(s) of {edit.old.strip()!r}, found {found}"
        )
    path.write_text(text.replace(edit.old, edit.new))


def apply_rewrite(source: Path, rewrite: Rewrite) -> None:
    """Apply one :class:`Rewrite` to the packages of the sdist tree ``source``, in place; the
    files and counts it matches must be exactly ``rewrite.uses``."""
    pattern = re.compile(rewrite.pattern)
    changed: Dict[str, str] = {}
    counts: Dict[str, int] = {}
    for package in PACKAGE_DIRS:
        for path in sorted((source / package).rglob("*.py")):
            text, count = pattern.subn(rewrite.repl, path.read_text())
            if count:
                name = path.relative_to(source).as_posix()
                changed[name], counts[name] = text, count
    if counts != dict(rewrite.uses):
        raise InstallError(
            f"{source}: {rewrite.pattern!r} occurs {counts}, expected {dict(rewrite.uses)}; "
            "this sdist differs from the one tools/install_detectron2.py was written for"
        )
    for name, text in changed.items():
        (source / name).write_text(text)


def write_stand_in(source: Path) -> None:
    """Add ``detectron2/_C.py``: the stand-in, marked with ``SEMASK_PATCH_LEVEL``."""
    target = source / STAND_IN_TARGET
    if target.exists():
        raise InstallError(f"{target}: the sdist already has a detectron2._C module")
    marker = f"{PATCH_LEVEL_NAME} = {PATCH_LEVEL}\n"
    target.write_text(
        f"{STAND_IN.read_text()}\n\n# Written by SeMask's tools/install_detectron2.py.\n{marker}"
    )


def patch_sdist(source: Path) -> None:
    """Make every patch (module docstring) to the extracted sdist ``source``, in place."""
    for edit in EDITS:
        apply_edit(source, edit)
    for rewrite in REWRITES:
        apply_rewrite(source, rewrite)
    write_stand_in(source)


def install_from_sdist(workdir: Path, run: Runner) -> None:
    """Download, patch and install the sdist using ``workdir`` as scratch space."""
    archive = download_sdist(workdir, run)
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    source = workdir / SDIST_DIR_NAME
    patch_sdist(source)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    result = run(cmd + ["--force-reinstall", str(source)])
    if result.returncode != 0:
        tail = "\n".join((result.stderr or "").strip().splitlines()[-5:])
        raise InstallError(f"pip could not install the patched {SDIST_DIR_NAME}:\n{tail}")


def ensure_detectron2(run: Optional[Runner] = None) -> str:
    """Install the patched sdist unless a detectron2 to keep is importable; return a one-line
    description of what was done.

    ``run`` executes pip commands (default: :func:`run_quietly`); tests pass a fake registry.
    """
    found = find_detectron2()
    if found is not None and not found.from_sdist:
        return f"detectron2 already importable from {found.location}; keeping it"
    if found is not None and found.patch_level == PATCH_LEVEL:
        return (
            f"detectron2 {SDIST_VERSION} at {found.location} already has SeMask's patches "
            f"(level {PATCH_LEVEL}); keeping it"
        )
    with tempfile.TemporaryDirectory(prefix="semask-d2-") as tmp:
        install_from_sdist(Path(tmp), run or run_quietly)
    importlib.invalidate_caches()
    installed = find_detectron2()
    if installed is None or installed.patch_level != PATCH_LEVEL:
        where = "is not importable" if installed is None else f"at {installed.location} lacks them"
        raise InstallError(f"pip reported success but the patched detectron2 {where}")
    done = "installed" if found is None else f"replaced (it had patch level {found.patch_level})"
    return (
        f"{done} detectron2 {SDIST_VERSION}, pure Python with SeMask's patches "
        f"(level {PATCH_LEVEL}), at {installed.location}"
    )


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
