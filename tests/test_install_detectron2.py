"""tools/install_detectron2.py: patches the sdist (checked file by file), tells a patched install
from an unpatched one and from any other detectron2, is idempotent, fails cleanly offline."""

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict

import pytest
from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "install_detectron2", REPO_ROOT / "tools" / "install_detectron2.py"
)
installer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(installer)

SETUP_PY = (
    "setup(\n"
    '    name="pb1-detectron2",\n'
    "    ext_modules=get_extensions(),\n"
    '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n'
    ")\n"
)
ALIASES = ["np.int", "np.float", "np.bool", "np.str"]
# Spellings that stay: numpy's own types and names that only start like an alias.
UNTOUCHED = "a = np.int64, np.int_, np.float32, np.bool_, np.string_, np.integer, onp.int\n"
BOX_REGRESSION = (
    "import torch\n"
    "from detectron2.structures import Boxes\n"
    "\n@torch.jit.script\ndef add_one(x: int) -> int:\n    return x + 1\n"
    "\n@torch.jit.script\ndef add_two(x: int) -> int:\n    return x + 2\n"
)


def mini_sdist(root: Path) -> Path:
    """A source tree with every line the patches look for, in the places the real sdist has them;
    each rewritten file holds as many uses of the old spellings as the real one."""
    files: Dict[str, str] = {
        "setup.py": SETUP_PY,
        "detectron2/__init__.py": "from .utils.env import setup_environment\nsetup_environment()\n",
        "detectron2/utils/env.py": "def setup_environment():\n    pass\n",
        "detectron2/structures/__init__.py": "Boxes = None\n",
        "detectron2/layers/dtypes.py": UNTOUCHED,
        "detectron2/modeling/__init__.py": "",
        "detectron2/modeling/box_regression.py": BOX_REGRESSION,
        "detectron2/data/common.py": "i = self._rng.sample(self._fallback_candidates, k=1)[0]\n",
        "tools/not_installed.py": "x = np.int\n",  # outside the installed packages: left as is
    }
    for rewrite in installer.REWRITES:
        for name, count in rewrite.uses.items():
            old = ALIASES if "np" in rewrite.pattern else ["Image.LINEAR"]
            uses = [f"v{i} = {old[i % len(old)]}\n" for i in range(count)]
            files[name] = files.get(name, "") + "".join(uses)
    source = root / installer.SDIST_DIR_NAME
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    return source


def test_patch_sdist_makes_every_patch(tmp_path):
    source = mini_sdist(tmp_path)
    installer.patch_sdist(source)
    setup_py = (source / "setup.py").read_text()
    assert "ext_modules" not in setup_py and "cmdclass" not in setup_py
    assert 'name="pb1-detectron2"' in setup_py
    assert (source / "detectron2/data/build.py").read_text() == "v0 = int\nv1 = float\n"
    assert (source / "detectron2/data/datasets/pascal_voc.py").read_text() == "v0 = int\n"
    sem_seg = (source / "detectron2/evaluation/sem_seg_evaluation.py").read_text()
    assert (
        sem_seg.split()
        == "v0 = int v1 = float v2 = bool v3 = str v4 = int v5 = float v6 = bool".split()
    )
    transform = (source / "detectron2/data/transforms/transform.py").read_text()
    assert transform == "v0 = Image.BILINEAR\n"
    assert (source / "detectron2/layers/dtypes.py").read_text() == UNTOUCHED
    assert (source / "tools/not_installed.py").read_text() == "x = np.int\n"
    common = (source / "detectron2/data/common.py").read_text()
    assert common == "i = self._rng.sample(sorted(self._fallback_candidates), k=1)[0]\n"
    assert "@torch.jit.script" not in (source / "detectron2/modeling/box_regression.py").read_text()
    assert installer.read_patch_level(source / "detectron2") == installer.PATCH_LEVEL


def test_patched_package_imports_fvcore_and_scripts_quietly_and_keeps_the_filters(tmp_path):
    source = mini_sdist(tmp_path)
    installer.patch_sdist(source)
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "filters = list(warnings.filters)\n"
        "import detectron2, fvcore.nn\n"
        "from detectron2.modeling import box_regression\n"
        "assert box_regression.add_one(1) == 2 and box_regression.add_two(1) == 3\n"
        "assert warnings.filters == filters, 'the filter leaked out of the import'\n"
        "assert detectron2.__file__.startswith(%r)\n"
        "import torch\n"
        "try:\n"
        "    torch.jit.script(len)  # a user's own call still warns\n"
        "except Exception:\n"
        "    pass\n"
    ) % str(source)
    env = {**os.environ, "PYTHONPATH": str(source)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("`torch.jit.script` is deprecated") == 1, result.stderr


def test_the_stand_in_raises_naming_the_op_and_answers_the_environment_report(tmp_path):
    source = mini_sdist(tmp_path)
    installer.patch_sdist(source)
    spec = importlib.util.spec_from_file_location("stand_in", source / "detectron2/_C.py")
    stand_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stand_in)
    with pytest.raises(stand_in.MissingCompiledOpError, match=r"detectron2\._C\.nms_rotated"):
        stand_in.nms_rotated(None, None, 0.5)
    assert stand_in.nms_rotated.__name__ == "nms_rotated"
    assert stand_in.get_compiler_version() == stand_in.get_cuda_version() == stand_in.NOT_COMPILED
    assert stand_in.has_cuda() is False
    assert not hasattr(stand_in, "__wrapped__")  # inspect and pickle must not see fake dunders


def test_a_different_sdist_fails_naming_the_file_or_the_counts(tmp_path):
    source = mini_sdist(tmp_path / "extra")
    (source / "detectron2/engine.py").write_text("dtype = np.float\n")
    with pytest.raises(installer.InstallError, match="'detectron2/engine.py': 1"):
        installer.patch_sdist(source)

    source = mini_sdist(tmp_path / "setup")
    (source / "setup.py").write_text("setup(name='other')\n")
    with pytest.raises(installer.InstallError, match=f"{source / 'setup.py'}: expected 1"):
        installer.patch_sdist(source)

    source = mini_sdist(tmp_path / "scripted")
    (source / "detectron2/modeling/box_regression.py").write_text(
        BOX_REGRESSION.replace("\n@torch.jit.script\ndef add_two", "\ndef add_two")
    )
    with pytest.raises(installer.InstallError, match=r"expected 2 occurrence\(s\).*found 1"):
        installer.patch_sdist(source)


def fake_site(root: Path, dist_name: str, stand_in: str = "") -> Path:
    """A site-packages folder holding ``detectron2`` as installed by the distribution
    ``dist_name`` (with ``stand_in`` as its ``_C.py`` when given)."""
    (root / "detectron2").mkdir(parents=True)
    (root / "detectron2/__init__.py").write_text("")
    if stand_in:
        (root / "detectron2/_C.py").write_text(stand_in)
    info = root / f"{dist_name.replace('-', '_')}-0.6.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.6\n")
    return root


def test_find_detectron2_tells_patched_unpatched_and_other_installs(tmp_path):
    assert installer.find_detectron2([str(tmp_path)]) is None

    site = fake_site(tmp_path / "unpatched", "pb1-detectron2")
    found = installer.find_detectron2([str(site)])
    assert found == installer.Detectron2(site / "detectron2", True, 0)

    marker = f"def has_cuda():\n    return False\n\nSEMASK_PATCH_LEVEL = {installer.PATCH_LEVEL}\n"
    site = fake_site(tmp_path / "patched", "pb1-detectron2", marker)
    assert installer.find_detectron2([str(site)]).patch_level == installer.PATCH_LEVEL

    site = fake_site(tmp_path / "upstream", "detectron2")
    found = installer.find_detectron2([str(site)])
    assert found.location == site / "detectron2" and not found.from_sdist


def completed(cmd, returncode=0, stderr=""):
    return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)


def never_run(cmd):
    raise AssertionError(f"nothing should run, got {cmd}")


class FakeRegistry:
    """Serves the mini sdist to ``pip download``; records what ``pip install`` was given."""

    def __init__(self, tmp_path: Path) -> None:
        self.archive_source = mini_sdist(tmp_path / "archive")
        self.installed = []

    def __call__(self, cmd):
        if "download" in cmd:
            dest = Path(cmd[cmd.index("--dest") + 1])
            with tarfile.open(dest / f"{installer.SDIST_DIR_NAME}.tar.gz", "w:gz") as tar:
                tar.add(self.archive_source, arcname=installer.SDIST_DIR_NAME)
            return completed(cmd)
        source = Path(cmd[-1])
        self.installed.append((cmd, installer.read_patch_level(source / "detectron2")))
        return completed(cmd)


def test_keeps_the_detectron2_of_this_environment_without_running_anything():
    message = installer.ensure_detectron2(run=never_run)
    assert message.endswith("keeping it")
    assert installer.ensure_detectron2(run=never_run) == message  # twice: still a no-op


@pytest.mark.parametrize("from_sdist", [False, True], ids=["upstream", "patched-sdist"])
def test_keeps_an_upstream_or_patched_install(monkeypatch, from_sdist):
    found = installer.Detectron2(Path("/site/detectron2"), from_sdist, installer.PATCH_LEVEL)
    monkeypatch.setattr(installer, "find_detectron2", lambda: found)
    message = installer.ensure_detectron2(run=never_run)
    assert message.endswith("keeping it") and "/site/detectron2" in message


@pytest.mark.parametrize("before", [None, 0, installer.PATCH_LEVEL + 1], ids=["none", "0", "newer"])
def test_installs_or_replaces_with_the_patched_sdist(monkeypatch, tmp_path, before):
    location = Path("/site/detectron2")
    old = None if before is None else installer.Detectron2(location, True, before)
    new = installer.Detectron2(location, True, installer.PATCH_LEVEL)
    states = iter([old, new])
    monkeypatch.setattr(installer, "find_detectron2", lambda: next(states))
    registry = FakeRegistry(tmp_path)
    message = installer.ensure_detectron2(run=registry)
    assert len(registry.installed) == 1
    cmd, level = registry.installed[0]
    assert "--force-reinstall" in cmd and Path(cmd[-1]).name == installer.SDIST_DIR_NAME
    assert level == installer.PATCH_LEVEL  # pip was given the patched tree
    done = "installed" if before is None else f"replaced (it had patch level {before})"
    assert message.startswith(f"{done} detectron2 0.6") and str(location) in message


def test_a_still_unpatched_install_after_pip_is_an_error(monkeypatch, tmp_path):
    unpatched = installer.Detectron2(Path("/site/detectron2"), True, 0)
    monkeypatch.setattr(installer, "find_detectron2", lambda: unpatched)
    with pytest.raises(installer.InstallError, match="at /site/detectron2 lacks them"):
        installer.ensure_detectron2(run=FakeRegistry(tmp_path))


def test_offline_registry_gives_a_clear_error_and_installs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(installer, "find_detectron2", lambda: None)
    calls = []

    def offline(cmd):
        calls.append(cmd)
        return completed(cmd, 1, "ERROR: Could not find a version that satisfies the requirement")

    with pytest.raises(installer.InstallError, match="could not download pb1-detectron2==0.6"):
        installer.ensure_detectron2(run=offline)
    assert len(calls) == 1 and "download" in calls[0]

    monkeypatch.setattr(installer, "run_quietly", offline)
    assert installer.main([]) == 1
    assert "is PyPI reachable" in capsys.readouterr().err
