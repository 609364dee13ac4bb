"""End to end: a tiny SeMask Mask2Former trains a few iterations on generated panoptic data and on
instance annotations derived from it, then the trainer's evaluators report PQ (with mIoU) and
mask AP; the prior loss trains on the semantic map derived from the panoptic labels."""

import json

import numpy as np
import pytest
from conftest import REPO_ROOT
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.utils.env import seed_all_rng
from test_train_e2e import tiny_model_opts

from semask.data.image_io import read_image
from semask.data.panoptic_datasets import register_panoptic
from semask.data.panoptic_labels import rgb_to_id, semantic_from_segments
from semask.data.quickstart_panoptic import PANOPTIC_CATEGORIES, generate_panoptic, split_layout
from semask.engine import Trainer, build_cfg
from semask.instance_evaluation import panoptic_instances_coco
from semask.modeling.semantic_prior import CriterionPriorLoss

pytestmark = pytest.mark.slow

CONFIG = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
PAN_TRAIN, PAN_VAL = "e2e_tiny_panoptic_train", "e2e_tiny_panoptic_val"
INS_TRAIN, INS_VAL = "e2e_tiny_instance_train", "e2e_tiny_instance_val"


def _forget(name):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture(scope="module")
def panoptic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("panoptic_tiny")
    generate_panoptic(root, num_train=6, num_val=2, size=64, seed=3)
    for name, split in ((PAN_TRAIN, "training"), (PAN_VAL, "validation")):
        _forget(name)
        layout = split_layout(root, split)
        register_panoptic(
            name,
            image_root=str(layout.image_dir),
            panoptic_root=str(layout.panoptic_dir),
            panoptic_json=str(layout.panoptic_json),
            sem_seg_root=str(layout.semantic_dir),
            categories=PANOPTIC_CATEGORIES,
        )
    return root


@pytest.fixture(scope="module")
def instance_root(panoptic_root):
    """COCO instance JSONs of the panoptic set's things, registered as detectron2 registers COCO."""
    for name, panoptic_name, split in (
        (INS_TRAIN, PAN_TRAIN, "training"),
        (INS_VAL, PAN_VAL, "validation"),
    ):
        _forget(name)
        json_file = panoptic_root / f"instances_{split}.json"
        json_file.write_text(json.dumps(panoptic_instances_coco(panoptic_name)))
        register_coco_instances(
            name, {}, str(json_file), str(split_layout(panoptic_root, split).image_dir)
        )
    return panoptic_root


def _cfg(output_dir, train, test, num_classes, mapper, outputs, max_iter=3):
    """A tiny run on ``train``, tested on ``test``, with the model outputs named in ``outputs``."""
    opts = tiny_model_opts(output_dir, max_iter) + [
        "DATASETS.TRAIN",
        f"('{train}',)",
        "DATASETS.TEST",
        f"('{test}',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        str(num_classes),
        "INPUT.DATASET_MAPPER_NAME",
        mapper,
        "TEST.REPORT.ENABLED",
        "False",
    ]
    for key in ("SEMANTIC_ON", "PANOPTIC_ON", "INSTANCE_ON"):
        opts += [f"MODEL.MASK_FORMER.TEST.{key}", str(key in outputs)]
    return build_cfg(str(CONFIG), opts)


def _train_and_test(cfg):
    seed_all_rng(0)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = Trainer.test(cfg, trainer.model)
    return trainer, results


def _finite_numbers(mapping):
    return all(np.isfinite(v) for v in mapping.values() if isinstance(v, float))


def test_panoptic_training_reports_pq_and_miou(panoptic_root, tmp_path):
    cfg = _cfg(
        tmp_path, PAN_TRAIN, PAN_VAL, 7, "mask_former_panoptic", ("SEMANTIC_ON", "PANOPTIC_ON")
    )
    _, results = _train_and_test(cfg)
    assert {"panoptic_seg", "sem_seg"} <= set(results)
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"} <= set(results["panoptic_seg"])
    assert 0 <= results["panoptic_seg"]["PQ"] <= 100
    assert 0 <= results["sem_seg"]["mIoU"] <= 100
    assert _finite_numbers(results["sem_seg"])


def test_instance_training_reports_mask_ap(instance_root, tmp_path):
    cfg = _cfg(tmp_path, INS_TRAIN, INS_VAL, 3, "mask_former_instance", ("INSTANCE_ON",))
    _, results = _train_and_test(cfg)
    assert set(results) == {"segm"}
    assert {"AP", "AP50", "AP75"} <= set(results["segm"])
    assert all(0 <= v <= 100 or np.isnan(v) for v in results["segm"].values())


def test_prior_loss_trains_on_the_panoptic_semantic_map(panoptic_root, tmp_path, monkeypatch):
    """The prior loss's target is the mapper's ``sem_seg``: the semantic map of the panoptic PNG
    (things and stuff), on the crop the masks were cut from."""
    seen = []
    original = CriterionPriorLoss.__call__

    def spy(self, outputs, targets):
        seen.extend(t["sem_seg"].clone() for t in targets)
        return original(self, outputs, targets)

    monkeypatch.setattr(CriterionPriorLoss, "__call__", spy)
    cfg = _cfg(
        tmp_path, PAN_TRAIN, PAN_VAL, 7, "mask_former_panoptic", ("PANOPTIC_ON",), max_iter=1
    )
    cfg.defrost()
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.COLOR_AUG_SSD = False
    cfg.INPUT.CROP.ENABLED = False
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.train()
    assert len(seen) == 2  # one iteration, a batch of 2
    expected = {
        tuple(semantic_from_segments(*_panoptic_of(record)).flatten().tolist())
        for record in DatasetCatalog.get(PAN_TRAIN)
    }
    for sem_seg in seen:
        assert tuple(sem_seg.flatten().tolist()) in expected


def _panoptic_of(record):
    """Segment ids [H, W] and segments of a panoptic data set dict."""
    segment_ids = rgb_to_id(read_image(record["pan_seg_file_name"], format="RGB"))
    return segment_ids, record["segments_info"]
