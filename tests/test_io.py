"""semask.io: outputs and checkpoints replace their previous version only when complete."""

import pytest
from detectron2.utils.file_io import PathManager

from semask.io import (
    AtomicWritePathManager,
    atomic_open,
    atomic_path,
    is_partial_file,
    remove_partial_files,
)


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json"
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    plain = tmp_path / "plain.json"
    plain.write_text("")
    assert target.stat().st_mode == plain.stat().st_mode


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_atomic_path_names_the_file_when_its_folder_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot write .*missing/out.png"):
        with atomic_path(tmp_path / "missing" / "out.png"):
            pass


def test_temporaries_are_marked_and_removed_after_a_kill(tmp_path):
    (tmp_path / "keep.pth").write_text("finished")
    (tmp_path / "sub").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "model.pth") as tmp:
            assert tmp.name.startswith(".model.pth.") and tmp.name.endswith(".partial.pth")
            assert is_partial_file(tmp) and not is_partial_file(tmp_path / "keep.pth")
            raise KeyboardInterrupt
    left = tmp_path / ".model.pth.x1y2.partial.pth"  # what a killed process leaves
    left.write_bytes(b"half")
    assert remove_partial_files(tmp_path) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pth", "sub"]
    assert remove_partial_files(tmp_path / "absent") == []


def test_atomic_open_replaces_when_the_file_is_closed_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "last_checkpoint"
    target.write_text("model_0000001.pth")
    with atomic_open(target, "w") as file:
        file.write("model_0000002.pth")
        file.flush()
        assert target.read_text() == "model_0000001.pth"
    assert target.read_text() == "model_0000002.pth"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target, "wb") as file:
            file.write(b"model_00")
            raise KeyboardInterrupt
    assert target.read_text() == "model_0000002.pth"
    assert [p.name for p in tmp_path.iterdir()] == ["last_checkpoint"]


class RecordingPathManager:
    """Stands in for a PathManager with handlers for URLs: records what reaches it."""

    def __init__(self):
        self.calls = []

    def open(self, path, mode="r", buffering=-1, **kwargs):
        self.calls.append(("open", path, mode))
        return open(path, mode, buffering, **kwargs)

    def ls(self, path):
        self.calls.append(("ls", path))
        return ["listed"]


def test_the_path_manager_writes_local_files_atomically_and_leaves_the_rest_to_its_base(tmp_path):
    manager = AtomicWritePathManager(PathManager)
    target = tmp_path / "model.pth"
    with manager.open(str(target), "wb") as file:
        file.write(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with manager.open(str(target), "wb") as file:
            file.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.pth"]
    with manager.open(str(target), "ab") as file:  # appending is not replacing
        file.write(b"+more")
    with manager.open(str(target), "rb") as file:
        assert file.read() == b"old+more"
    assert manager.exists(str(target)) and manager.ls(str(tmp_path)) == ["model.pth"]
    recording = RecordingPathManager()
    manager = AtomicWritePathManager(recording)
    with pytest.raises(OSError):
        manager.open("https://example.org/model.pth", "wb")
    assert manager.ls("folder") == ["listed"]
    with manager.open(str(target), "rb") as file:
        assert file.read() == b"old+more"
    assert recording.calls == [
        ("open", "https://example.org/model.pth", "wb"),
        ("ls", "folder"),
        ("open", str(target), "rb"),
    ]
