"""semask.checkpoint: safe reading of every weight format, strict loading, atomic finite saves,
resuming from the newest usable checkpoint."""

import logging
import os
import pickle
from collections import OrderedDict

import pytest
import torch
from fvcore.common.checkpoint import PeriodicCheckpointer
from torch import nn

from semask import io
from semask.checkpoint import (
    NonFiniteWeightsError,
    SeMaskCheckpointer,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    WeightsError,
    load_checkpoint_file,
    save_safetensors,
)


class RunsCode:
    """Unpickling it runs ``exec``, which creates ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def write_malicious(path, marker):
    """A checkpoint at ``path`` (``.pkl`` or ``.pth``) whose unpickling creates ``marker``."""
    data = {"model": {"weight": torch.zeros(2)}, "payload": RunsCode(marker)}
    if path.suffix == ".pkl":
        data["model"] = {"weight": data["model"]["weight"].numpy()}
        with path.open("wb") as f:
            pickle.dump(data, f)
    else:
        torch.save(data, path)
    return path


@pytest.fixture
def log(caplog):
    """Records of the ``semask`` loggers, even after detectron2's setup_logger stopped their
    propagation to the root logger."""
    semask_logger = logging.getLogger("semask")
    semask_logger.addHandler(caplog.handler)
    yield caplog
    semask_logger.removeHandler(caplog.handler)


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def write_pkl(state, path, protocol, numpy1_names=False):
    """A detectron2 model-zoo pickle; ``numpy1_names``: as numpy 1.x names its globals."""
    model = {k: v.numpy() for k, v in state.items()}
    data = pickle.dumps({"model": model, "__author__": "test", "step": 3}, protocol=protocol)
    if numpy1_names:
        assert b"numpy._core.multiarray\n_reconstruct" in data
        data = data.replace(b"numpy._core.", b"numpy.core.")
    path.write_bytes(data)


@pytest.mark.parametrize(
    "name, write",
    [
        ("w.pth", lambda state, path: torch.save({"model": state, "iteration": 3}, path)),
        ("w.pt", lambda state, path: torch.save(state, path)),
        ("w.pkl", lambda state, path: write_pkl(state, path, protocol=2)),
        ("w5.pkl", lambda state, path: write_pkl(state, path, protocol=5)),
        ("w1.pkl", lambda state, path: write_pkl(state, path, protocol=2, numpy1_names=True)),
        ("w.safetensors", save_safetensors),
    ],
)
def test_every_format_loads_into_the_model(name, write, tmp_path):
    source = linear(seed=1)
    write(OrderedDict(source.state_dict()), tmp_path / name)
    raw = load_checkpoint_file(tmp_path / name)
    assert isinstance(raw, dict)
    target = linear(seed=2)
    SeMaskCheckpointer(target, strict=True).load(str(tmp_path / name))
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)


def test_safetensors_round_trip_is_atomic(tmp_path):
    state = {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(2, dtype=torch.int64)}
    save_safetensors(state, tmp_path / "w.safetensors")
    loaded = load_checkpoint_file(tmp_path / "w.safetensors")
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_other_suffixes_and_bad_contents_are_refused_naming_the_file(tmp_path):
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(UnreadableCheckpointError, match=r"w\.ckpt has suffix '\.ckpt'; .*\.pkl"):
        load_checkpoint_file(tmp_path / "w.ckpt")
    (tmp_path / "notes.pkl").write_text("not a pickle")
    with pytest.raises(UnreadableCheckpointError, match="notes.pkl is not a readable checkpoint"):
        load_checkpoint_file(tmp_path / "notes.pkl")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(UnreadableCheckpointError, match="list.pth holds a list, not a dict"):
        load_checkpoint_file(tmp_path / "list.pth")


@pytest.mark.parametrize("suffix, refused", [(".pkl", "'builtins.exec'"), (".pth", "'exec'")])
def test_a_pickle_that_runs_code_is_refused(suffix, refused, tmp_path):
    marker = tmp_path / "marker"
    path = write_malicious(tmp_path / f"evil{suffix}", marker)
    with pytest.raises(UnsafeCheckpointError, match=f"{path} was refused: .*global {refused}"):
        load_checkpoint_file(path)
    with pytest.raises(UnsafeCheckpointError, match="MODEL.ALLOW_UNSAFE_PICKLE"):
        SeMaskCheckpointer(nn.Linear(2, 1)).load(str(path))
    assert not marker.exists()


def test_the_opt_in_unpickles_fully_and_warns(tmp_path, log):
    for suffix in (".pkl", ".pth"):
        marker = tmp_path / f"marker{suffix}"
        path = write_malicious(tmp_path / f"trusted{suffix}", marker)
        assert "model" in load_checkpoint_file(path, allow_unsafe_pickle=True)
        assert marker.exists()
        assert f"Unpickling {path} fully (MODEL.ALLOW_UNSAFE_PICKLE)" in log.text


def test_strict_loading_lists_keys_shapes_and_count(tmp_path, log):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    state = {k: v for k, v in other.state_dict().items() if k != "0.bias"}
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(WeightsError) as error:
        SeMaskCheckpointer(model, strict=True).load(str(tmp_path / "other.pth"))
    message = str(error.value)
    assert "other.pth does not fit the model" in message
    assert "3 of 4 entries not loaded" in message
    assert "1.weight: checkpoint (5, 4) vs model (2, 4)" in message
    assert "missing 0.bias (model (4,))" in message
    SeMaskCheckpointer(model).load(str(tmp_path / "other.pth"))
    assert "3 of 4 entries not loaded" in log.text and "keep their initial values" in log.text
    assert torch.equal(model[0].weight, other[0].weight)


def test_non_finite_weights_are_not_saved_and_keep_the_last_checkpoint(tmp_path):
    model = linear()
    checkpointer = SeMaskCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    with torch.no_grad():
        model.bias[1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"not saving .*model_0000002.pth: weight bias"):
        checkpointer.save("model_0000002", iteration=2)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    torch.save({"model": model.state_dict()}, tmp_path / "nan.pth")
    with pytest.raises(NonFiniteWeightsError, match="nan.pth holds non-finite weights: bias"):
        SeMaskCheckpointer(linear()).load(str(tmp_path / "nan.pth"))


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, log):
    model = linear()
    checkpointer = SeMaskCheckpointer(model, str(tmp_path))
    checkpointer.save("model_final", iteration=7)
    saved = torch.load(tmp_path / "model_final.pth")

    def crash_midway(obj, file):
        file.write(b"partial")
        raise KeyboardInterrupt

    with torch.no_grad():
        model.weight.add_(1.0)
    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final", iteration=8)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]
    left = tmp_path / ".model_final.pth.abc.partial.pth"  # as a SIGKILL mid-save leaves it
    left.write_bytes(b"half")
    fresh = linear(seed=3)
    resumed = SeMaskCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert resumed["iteration"] == 7 and torch.equal(fresh.weight, saved["model"]["weight"])
    assert not left.exists() and f"Removed {left}" in log.text


def test_checkpoints_and_their_tag_are_written_through_the_atomic_path_manager(
    tmp_path, monkeypatch
):
    written = []
    atomic_open = io.atomic_open

    def recording_atomic_open(path, mode, **kwargs):
        written.append((os.path.basename(path), mode))
        return atomic_open(path, mode, **kwargs)

    monkeypatch.setattr(io, "atomic_open", recording_atomic_open)
    model = linear()
    periodic = PeriodicCheckpointer(SeMaskCheckpointer(model, str(tmp_path)), 1, max_to_keep=2)
    for iteration in range(3):
        periodic.step(iteration)
    assert written == [
        (name, mode)
        for iteration in range(3)
        for name, mode in ((f"model_{iteration:07d}.pth", "wb"), ("last_checkpoint", "w"))
    ]
    # fvcore's pruning goes through the wrapped PathManager: only the newest two are kept.
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000001.pth",
        "model_0000002.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"
    loaded = torch.load(tmp_path / "model_0000002.pth")
    assert loaded["iteration"] == 2 and torch.equal(loaded["model"]["weight"], model.weight)


def three_checkpoints(folder):
    """model_0000001/3/5.pth of a linear model, with weights 1, 3, 5; the tag names 5."""
    model = linear()
    checkpointer = SeMaskCheckpointer(model, str(folder))
    for iteration in (1, 3, 5):
        with torch.no_grad():
            model.weight.fill_(iteration)
        checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
    return folder


def resume(folder):
    model = linear(seed=9)
    return model, SeMaskCheckpointer(model, str(folder)).resume_or_load("", resume=True)


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path, log):
    newest = three_checkpoints(tmp_path) / "model_0000005.pth"
    newest.write_bytes(newest.read_bytes()[:1000])
    model, extra = resume(tmp_path)
    assert extra["iteration"] == 3 and (model.weight == 3).all()
    assert (
        f"Resume: skipping {newest}: checkpoint {newest} is not a readable checkpoint" in log.text
    )


def test_resume_skips_a_checkpoint_with_nan_weights(tmp_path, log):
    newest = three_checkpoints(tmp_path) / "model_0000005.pth"
    data = torch.load(newest)
    data["model"]["bias"][0] = float("inf")
    torch.save(data, newest)
    model, extra = resume(tmp_path)
    assert extra["iteration"] == 3 and (model.weight == 3).all()
    assert f"skipping {newest}: checkpoint {newest} holds non-finite weights: bias" in log.text


def test_resume_falls_back_when_the_tagged_file_is_gone(tmp_path, log):
    three_checkpoints(tmp_path)
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    model, extra = resume(tmp_path)
    assert extra["iteration"] == 5 and (model.weight == 5).all()
    assert "model_0000009.pth does not exist" in log.text


def test_resume_with_no_usable_checkpoint_lists_them(tmp_path):
    three_checkpoints(tmp_path)
    for name in ("model_0000001.pth", "model_0000003.pth", "model_0000005.pth"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(WeightsError, match="no usable checkpoint to resume from") as error:
        resume(tmp_path)
    message = str(error.value)
    assert message.index("model_0000005") < message.index("model_0000003")
    assert "model_0000001.pth is not a readable checkpoint" in message


def test_without_checkpoints_resume_loads_the_given_weights(tmp_path):
    source = linear(seed=4)
    save_safetensors(source.state_dict(), tmp_path / "init.safetensors")
    model = linear()
    checkpointer = SeMaskCheckpointer(model, str(tmp_path / "run"))
    assert not checkpointer.has_checkpoint()
    checkpointer.resume_or_load(str(tmp_path / "init.safetensors"), resume=True)
    assert torch.equal(model.weight, source.weight)
    assert checkpointer.loaded_file == str(tmp_path / "init.safetensors")
