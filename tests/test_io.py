"""semask.io: outputs and checkpoints replace their previous version only when complete."""

import pytest
import torch
from torch import nn

from semask.io import AtomicCheckpointer, atomic_path


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


def test_checkpointer_round_trip_and_interrupted_save(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.save("model_final", iteration=7)
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    saved = torch.load(tmp_path / "model_final.pth")
    assert saved["iteration"] == 7
    assert torch.equal(saved["model"]["weight"], model.weight)

    def crash_midway(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    with torch.no_grad():
        model.weight.add_(1.0)
    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final", iteration=8)
    monkeypatch.undo()
    restored = torch.load(tmp_path / "model_final.pth")
    assert restored["iteration"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]
    fresh = nn.Linear(3, 2)
    assert (
        AtomicCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 7
    )
    assert torch.equal(fresh.weight, saved["model"]["weight"])
