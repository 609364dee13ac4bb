"""tools/install_detectron2.py: idempotent, patches the sdist, fails cleanly offline."""

import importlib.util
import io
import subprocess
import tarfile
from pathlib import Path

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


def completed(cmd, returncode=0, stderr=""):
    return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)


def never_run(cmd):
    raise AssertionError(f"nothing should run, got {cmd}")


def test_keeps_an_importable_detectron2_without_running_anything():
    message = installer.ensure_detectron2(run=never_run)
    assert "already importable" in message
    assert installer.ensure_detectron2(run=never_run) == message  # twice: still a no-op


def test_strip_extensions_removes_the_compiled_build(tmp_path):
    setup_py = tmp_path / "setup.py"
    setup_py.write_text(SETUP_PY)
    installer.strip_extensions(setup_py)
    text = setup_py.read_text()
    assert "ext_modules" not in text and "cmdclass" not in text
    assert 'name="pb1-detectron2"' in text


def test_strip_extensions_names_the_file_when_setup_py_differs(tmp_path):
    setup_py = tmp_path / "setup.py"
    setup_py.write_text("setup(name='other')\n")
    with pytest.raises(installer.InstallError, match=str(setup_py)):
        installer.strip_extensions(setup_py)


def test_offline_registry_gives_a_clear_error_and_installs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(installer, "detectron2_location", lambda: None)
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


def test_installs_the_patched_sdist_when_detectron2_is_missing(monkeypatch):
    locations = iter([None, "/site-packages/detectron2/__init__.py"])
    monkeypatch.setattr(installer, "detectron2_location", lambda: next(locations))
    installed = []

    def registry(cmd):
        if "download" in cmd:
            dest = Path(cmd[cmd.index("--dest") + 1])
            with tarfile.open(dest / "pb1-detectron2-0.6.tar.gz", "w:gz") as tar:
                data = SETUP_PY.encode()
                info = tarfile.TarInfo("pb1-detectron2-0.6/setup.py")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            return completed(cmd)
        source = Path(cmd[-1])
        installed.append((source.name, (source / "setup.py").read_text()))
        return completed(cmd)

    message = installer.ensure_detectron2(run=registry)
    assert message.startswith("installed detectron2 0.6")
    assert len(installed) == 1
    name, setup_text = installed[0]
    assert name == "pb1-detectron2-0.6" and "ext_modules" not in setup_text
