"""Training curves (semask.curves, tools/plot_curves.py) from metrics.json files written by
detectron2's own JSONWriter, and from a real tiny training run."""

import json
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from detectron2.utils.events import EventStorage, JSONWriter
from PIL import Image
from test_train_e2e import CONFIG, VAL, tiny_opts

from semask.curves import read_metrics, write_training_curves
from semask.data.quickstart import generate
from semask.engine import Trainer, build_cfg

sys.path.insert(0, str(REPO_ROOT / "tools"))
import plot_curves  # noqa: E402


def _write_metrics(folder, iterations=6, eval_every=3):
    """metrics.json as detectron2 writes it during training: losses, lr, an mIoU every few."""
    writer = JSONWriter(str(folder / "metrics.json"), window_size=1)
    with EventStorage(0) as storage:
        for it in range(iterations):
            storage.iter = it
            storage.put_scalars(total_loss=10.0 - it, loss_ce=1.0, loss_ce_0=2.0, loss_cate=0.5)
            storage.put_scalar("lr", 0.01 * (1 - it / iterations), smoothing_hint=False)
            if (it + 1) % eval_every == 0:
                storage.put_scalar("sem_seg/mIoU", 10.0 * it, smoothing_hint=False)
            writer.write()
    writer.close()


def test_curves_are_drawn_from_a_detectron2_metrics_file(tmp_path):
    _write_metrics(tmp_path)
    with (tmp_path / "metrics.json").open("a") as file:
        file.write('{"iteration": 6, "total_lo')  # cut short by a killed run
    records = read_metrics(tmp_path / "metrics.json")
    assert list(records) == [0, 1, 2, 3, 4, 5]
    assert records[5]["total_loss"] == 5.0 and records[5]["sem_seg/mIoU"] == 50.0
    assert "sem_seg/mIoU" not in records[3]
    path = write_training_curves(tmp_path)
    assert path == tmp_path / "training_curves.png"
    assert Image.open(path).size[0] >= 1000


def test_a_resumed_run_rewrites_its_iterations(tmp_path):
    lines = [{"iteration": 0, "total_loss": 3.0}, {"iteration": 1, "total_loss": 2.0}]
    lines += [{"iteration": 1, "total_loss": 1.5, "lr": 0.1}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert read_metrics(tmp_path / "metrics.json") == {
        0: {"total_loss": 3.0},
        1: {"total_loss": 1.5, "lr": 0.1},
    }


def test_plot_curves_tool(tmp_path, capsys):
    _write_metrics(tmp_path)
    out = tmp_path / "curves.png"
    assert plot_curves.main([str(tmp_path), "--output", str(out)]) == out
    assert out.is_file() and str(out) in capsys.readouterr().out
    with pytest.raises(SystemExit, match=f"no {tmp_path / 'empty' / 'metrics.json'}"):
        plot_curves.main([str(tmp_path / "empty")])


@pytest.mark.slow
def test_training_writes_curves_and_the_report(tmp_path):
    data = tmp_path / "data"
    generate(data, num_train=4, num_val=2, size=48, seed=3)
    cfg = build_cfg(str(CONFIG), tiny_opts(data, tmp_path / "out", max_iter=3))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    records = read_metrics(tmp_path / "out" / "metrics.json")
    assert {"total_loss", "loss_ce", "loss_cate", "lr"} <= set(records[2])
    assert "sem_seg/mIoU" in records[3]  # the evaluation after training, at iteration MAX_ITER
    curves = np.asarray(Image.open(tmp_path / "out" / "training_curves.png"))
    assert curves.shape[1] >= 1000 and curves.std() > 0
    report = json.loads(
        (tmp_path / "out" / "inference" / "report" / VAL / "per_class.json").read_text()
    )
    assert report["mIoU"] == records[3]["sem_seg/mIoU"]
