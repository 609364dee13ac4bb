"""semask.io: outputs and checkpoints replace their previous version only when complete."""

import pytest

from semask.io import atomic_path, is_partial_file, remove_partial_files


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
