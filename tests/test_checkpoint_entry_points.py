"""Every entry point reads weights safely: train_net (training, --eval-only, --resume), the
predictor, the demo and convert_weights refuse code-running pickles; --eval-only refuses weights
that do not fit; a killed, truncated or NaN checkpoint never stops a run from resuming."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import test_checkpoint
import test_demo
import torch
from conftest import REPO_ROOT
from detectron2.engine import default_argument_parser
from test_checkpoint import write_malicious
from test_demo import demo
from test_predictor import contract_cfg
from test_train_e2e import CONFIG, RecordIterations, _cfg, tiny_opts

from semask.checkpoint import UnsafeCheckpointError, WeightsError
from semask.data.quickstart import generate
from semask.engine import Trainer
from semask.predictor import SeMaskPredictor

sys.path.insert(0, str(REPO_ROOT / "tools"))
import convert_weights  # noqa: E402


def load_train_net():
    spec = importlib.util.spec_from_file_location("semask_train_net", REPO_ROOT / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_net = load_train_net()
log = test_checkpoint.log  # fixtures shared with those modules
demo_config = test_demo.config_file


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, num_train=4, num_val=2, size=64, seed=5)
    return root


def run_train_net(data_root, output_dir, flags=(), opts=()):
    """train_net.main on the tiny set; ``opts`` override the tiny KEY VALUE list."""
    argv = ["--config-file", str(CONFIG), *flags]
    argv += tiny_opts(data_root, output_dir, max_iter=2) + list(opts)
    return train_net.main(default_argument_parser().parse_args(argv))


def refuse_in(entry, weights, data_root, tmp_path, demo_config):
    """Load ``weights`` (a file) through one entry point."""
    out = tmp_path / "out"
    if entry == "train":
        run_train_net(data_root, out, opts=["MODEL.WEIGHTS", str(weights)])
    elif entry == "eval-only":
        run_train_net(data_root, out, ["--eval-only"], ["MODEL.WEIGHTS", str(weights)])
    elif entry == "resume":
        out.mkdir()
        os.replace(weights, out / weights.name)
        (out / "last_checkpoint").write_text(weights.name)
        run_train_net(data_root, out, ["--resume"])
    elif entry == "predictor":
        SeMaskPredictor(contract_cfg(**{"MODEL.WEIGHTS": str(weights)}))
    elif entry == "demo":
        image = tmp_path / "image.png"
        demo.cv2.imwrite(str(image), demo.np.zeros((8, 8, 3), demo.np.uint8))
        demo.main(
            ["--config-file", str(demo_config), "--input", str(image), "--output", str(out)]
            + ["MODEL.WEIGHTS", str(weights)]
        )
    else:
        convert_weights.main(["semask", str(weights), str(out / "converted.pkl")])


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
@pytest.mark.parametrize(
    "entry", ["train", "eval-only", "resume", "predictor", "demo", "convert_weights"]
)
def test_every_entry_point_refuses_a_pickle_that_runs_code(
    entry, suffix, tiny_data, tmp_path, demo_config
):
    marker = tmp_path / "marker"
    weights = write_malicious(tmp_path / f"evil{suffix}", marker)
    expected = SystemExit if entry in ("demo", "convert_weights") else UnsafeCheckpointError
    with pytest.raises(expected) as error:
        refuse_in(entry, weights, tiny_data, tmp_path, demo_config)
    message = str(error.value)
    assert f"evil{suffix} was refused" in message and "exec'" in message, message
    assert "MODEL.ALLOW_UNSAFE_PICKLE True" in message
    assert not marker.exists()
    assert not (tmp_path / "out" / "inference").exists()


def other_class_count_weights(data_root, path):
    cfg = _cfg(data_root, path.parent / "unused", max_iter=2)
    cfg.defrost()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 3
    model = Trainer.build_model(cfg)
    state = {k: v for k, v in model.state_dict().items() if "pixel_decoder" not in k}
    torch.save({"model": state}, path)
    return path


def test_eval_only_refuses_weights_that_do_not_fit(tiny_data, tmp_path):
    weights = other_class_count_weights(tiny_data, tmp_path / "three_classes.pth")
    with pytest.raises(WeightsError) as error:
        run_train_net(tiny_data, tmp_path / "out", ["--eval-only"], ["MODEL.WEIGHTS", str(weights)])
    message = str(error.value)
    assert f"checkpoint {weights} does not fit the model" in message
    first = "backbone.layers.0.semantic_layer.class_injection.0.mlp_cls_q.weight"
    assert f"entries not loaded: {first}: checkpoint (3, 16) vs model (7, 16);" in message
    assert re.search(r"model built from the config: (\d+) of \d+ entries", message)
    assert "; ..." in message
    assert not (tmp_path / "out" / "inference").exists()


def test_eval_only_opt_out_and_empty_weights_warn_loudly(tiny_data, tmp_path):
    weights = other_class_count_weights(tiny_data, tmp_path / "three_classes.pth")
    opts = ["MODEL.WEIGHTS", str(weights), "TEST.ALLOW_PARTIAL_WEIGHTS", "True"]
    results = run_train_net(tiny_data, tmp_path / "partial", ["--eval-only"], opts)
    assert 0.0 <= results["sem_seg"]["mIoU"] <= 100.0
    text = (tmp_path / "partial" / "log.txt").read_text()
    assert f"checkpoint {weights} does not fit the model" in text and "initial values" in text
    assert "RANDOM WEIGHTS" not in text
    run_train_net(tiny_data, tmp_path / "random", ["--eval-only"], ["MODEL.WEIGHTS", ""])
    assert "EVALUATING RANDOM WEIGHTS" in (tmp_path / "random" / "log.txt").read_text()


@pytest.mark.parametrize("damage", ["truncated", "nan"])
def test_training_resumes_from_the_last_good_checkpoint(damage, tiny_data, tmp_path, log):
    trainer = Trainer(_cfg(tiny_data, tmp_path, max_iter=4))
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.checkpointer.save("model_0000001", iteration=1)
    trainer.iter = 1
    trainer.checkpointer.save("model_0000003", iteration=3)
    newest = tmp_path / "model_0000003.pth"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:
        data = torch.load(newest)
        data["model"]["sem_seg_head.predictor.class_embed.bias"][0] = float("nan")
        torch.save(data, newest)
    resumed = Trainer(_cfg(tiny_data, tmp_path, max_iter=4))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 1
    assert all(torch.equal(v, good[k]) for k, v in resumed.model.state_dict().items())
    reason = "is not a readable checkpoint"
    if damage == "nan":
        reason = "holds non-finite weights: sem_seg_head.predictor.class_embed.bias"
    assert f"Resume: skipping {newest}: checkpoint {newest} {reason}" in log.text


CHILD = """
import pathlib, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from test_train_e2e import _cfg
from semask.engine import Trainer

data_root, output_dir, marker = map(pathlib.Path, sys.argv[2:5])
real_save = torch.save


def stalling_save(obj, file, *args, **kwargs):
    if "model_0000001" in file.name:  # the second checkpoint: die half way through it
        file.write(b"PK half a checkpoint")
        file.flush()
        marker.touch()
        time.sleep(300)
    real_save(obj, file, *args, **kwargs)


torch.save = stalling_save
cfg = _cfg(data_root, output_dir, max_iter=3)
cfg.defrost()
cfg.SOLVER.CHECKPOINT_PERIOD = 1
trainer = Trainer(cfg)
trainer.resume_or_load(resume=False)
trainer.train()
"""


@pytest.mark.slow
def test_a_run_killed_while_saving_resumes_from_the_last_good_checkpoint(tiny_data, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "saving"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", CHILD, str(REPO_ROOT / "tests"), str(tiny_data), str(out)]
    child = subprocess.Popen(argv + [str(marker)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), child.stderr.read().decode()[-3000:] if child.poll() else "timeout"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    partial = [p.name for p in out.iterdir() if p.name.startswith(".model_0000001.pth.")]
    assert len(partial) == 1 and partial[0].endswith(".partial.pth")
    assert (out / "last_checkpoint").read_text() == "model_0000000.pth"

    cfg = _cfg(tiny_data, out, max_iter=3)
    cfg.defrost()
    cfg.SOLVER.CHECKPOINT_PERIOD = 1
    resumed = Trainer(cfg)
    assert not (out / partial[0]).exists()
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 1
    record = RecordIterations()
    resumed.register_hooks([record])
    resumed.train()
    assert record.iterations == [1, 2]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert not [p for p in out.iterdir() if ".partial" in p.name]
