"""The project's Trainer runs a few iterations of a tiny real SeMask model on the CPU: it trains
(weights change, losses logged), checkpoints, evaluates at the end, and the final checkpoint
loads back into a fresh model."""

import json
import math

import torch
from test_train_e2e import CONFIG, tiny_opts

from semask.checkpoint import SeMaskCheckpointer
from semask.data.quickstart import generate
from semask.engine import Trainer, build_cfg


def test_semask_trainer_runs_a_few_iterations_on_cpu(tmp_path):
    data_root = generate(tmp_path / "data", num_train=4, num_val=2, size=64, seed=3)
    cfg = build_cfg(str(CONFIG), tiny_opts(data_root, tmp_path / "output", max_iter=3))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()

    assert trainer.iter == cfg.SOLVER.MAX_ITER
    trained = trainer.model.state_dict()
    changed = [k for k in initial if not torch.equal(initial[k], trained[k])]
    assert len(changed) > len(initial) // 2
    metrics = [json.loads(line) for line in (tmp_path / "output" / "metrics.json").open()]
    steps = [m for m in metrics if "total_loss" in m]
    assert [m["iteration"] for m in steps][-1] == cfg.SOLVER.MAX_ITER - 1
    last = steps[-1]
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_cate"} <= set(last)
    assert math.isfinite(last["total_loss"]) and last["total_loss"] > 0
    evaluated = [m for m in metrics if "sem_seg/mIoU" in m]
    assert len(evaluated) == 1 and 0.0 <= evaluated[0]["sem_seg/mIoU"] <= 100.0

    fresh = Trainer.build_model(cfg)
    SeMaskCheckpointer(fresh).load(str(tmp_path / "output" / "model_final.pth"))
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
