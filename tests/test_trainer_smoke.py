"""detectron2's DefaultTrainer runs on this stack (CPU, pure-Python detectron2) via semask."""

import json

import numpy as np
import torch
from conftest import semask_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultTrainer
from detectron2.modeling import META_ARCH_REGISTRY
from PIL import Image
from torch import nn


@META_ARCH_REGISTRY.register()
class SmokeTestMeanColor(nn.Module):
    """Predicts one learnable colour for every image; the loss is its distance to the mean."""

    def __init__(self, cfg):
        super().__init__()
        self.color = nn.Parameter(torch.zeros(3))

    @property
    def device(self):
        return self.color.device

    def forward(self, batched_inputs):
        means = torch.stack([x["image"].float().mean(dim=(1, 2)) / 255 for x in batched_inputs])
        return {"loss_color": ((self.color - means) ** 2).mean()}


def write_images(root, count=4):
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        path = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        records.append({"file_name": str(path), "height": 24, "width": 32, "image_id": i})
    return records


def test_default_trainer_runs_a_few_iterations_on_cpu(tmp_path):
    records = write_images(tmp_path)
    name = "semask_smoke_train"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)

    cfg = semask_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SmokeTestMeanColor"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 0.5
    cfg.SOLVER.MAX_ITER = 5
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 5
    cfg.OUTPUT_DIR = str(tmp_path / "output")

    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    assert trainer.iter == cfg.SOLVER.MAX_ITER
    assert torch.count_nonzero(trainer.model.color) == 3
    metrics = [json.loads(line) for line in (tmp_path / "output" / "metrics.json").open()]
    assert metrics[-1]["iteration"] == cfg.SOLVER.MAX_ITER - 1
    assert np.isfinite(metrics[-1]["total_loss"])
    assert (tmp_path / "output" / "model_final.pth").is_file()
