"""End to end, no Python written: a folder data set under ``$DETECTRON2_DATASETS`` (stored with
``reduce_zero_label`` and its own ignore value) trains and evaluates through ``train_net.py`` with
only config overrides, and ``--eval-only`` on the written config scores the same."""

import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser
from test_train_e2e import CONFIG, tiny_opts

from semask.data import register_folder_datasets
from semask.data.quickstart import make_sample

pytestmark = pytest.mark.slow

CLASSES = ("ground", "disc", "box", "triangle", "stripes", "checker", "shadow")
IGNORE = 250


def write_own_data(root, count):
    """``count`` images per split, .png, labels stored as class + 1 (0 and 250 unlabelled)."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "dataset.yaml").write_text(f"reduce_zero_label: true\nignore_label: {IGNORE}\n")
    for split_index, split in enumerate(("training", "validation")):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for index in range(count):
            image, labels = make_sample(np.random.default_rng([7, split_index, index]), 64)
            stored = labels + 1
            stored[:4, :4] = 0
            stored[-4:, -4:] = IGNORE
            cv2.imwrite(str(root / "images" / split / f"img{index}.png"), image[..., ::-1])
            cv2.imwrite(str(root / "annotations" / split / f"img{index}.png"), stored)


def load_train_net():
    spec = importlib.util.spec_from_file_location("own_data_train_net", REPO_ROOT / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folder_data_set_trains_and_evaluates_with_overrides_only(tmp_path):
    datasets = tmp_path / "datasets"
    write_own_data(datasets / "mine", count=4)
    out = tmp_path / "out"
    opts = tiny_opts(datasets / "mine", out, max_iter=3) + [
        "DATASETS.TRAIN",
        "('mine_sem_seg_train',)",
        "DATASETS.TEST",
        "('mine_sem_seg_val',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "0",
    ]
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets)}
    command = [sys.executable, str(REPO_ROOT / "train_net.py"), "--config-file", str(CONFIG)]
    run = subprocess.run(command + opts, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NUM_CLASSES: 7" in (out / "config.yaml").read_text()
    trained = torch.load(out / "inference" / "sem_seg_evaluation.pth", weights_only=False)
    assert {f"IoU-{name}" for name in CLASSES} <= set(trained)

    names = register_folder_datasets(datasets)
    try:
        argv = ["--config-file", str(out / "config.yaml"), "--eval-only"]
        argv += ["MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "ev")]
        results = load_train_net().main(default_argument_parser().parse_args(argv))["sem_seg"]
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    assert results["mIoU"] == pytest.approx(trained["mIoU"], abs=1e-6)
    assert results == pytest.approx(dict(trained), abs=1e-6, nan_ok=True)
