"""Start-up config checks: every bad key is named with its value before data or models are built."""

import argparse
import re

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.data import DatasetCatalog

import semask.data  # noqa: F401  (registers the data sets)
from semask.engine import ConfigError, build_cfg, setup_cfg, validate_config
from semask.modeling.backbone import D2SeMaskMiT, D2SeMaskSwinTransformer, SemanticLayer

CONFIG_DIR = REPO_ROOT / "configs"
# Base-*.yaml files are partial (e.g. an absolute crop whose size each leaf sets): leaves only.
LEAVES = sorted(
    p.relative_to(CONFIG_DIR).as_posix()
    for p in CONFIG_DIR.rglob("*.yaml")
    if not p.name.startswith("Base-")
)
QUICKSTART = CONFIG_DIR / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
MIT_CONFIG = CONFIG_DIR / "ade20k" / "semantic_fpn" / "semask_mit_b0_bs16_80k_res512.yaml"
PANOPTIC_CONFIG = CONFIG_DIR / "coco" / "panoptic-segmentation" / "swin_tiny_bs16_50ep.yaml"
INSTANCE_CONFIG = CONFIG_DIR / "coco" / "instance-segmentation" / "swin_tiny_bs16_50ep.yaml"


def quickstart(*opts: str):
    return build_cfg(str(QUICKSTART), list(opts))


def message(cfg, **kwargs) -> str:
    with pytest.raises(ConfigError) as error:
        validate_config(cfg, **kwargs)
    return str(error.value)


@pytest.mark.parametrize("name", LEAVES)
def test_every_shipped_config_passes(name):
    cfg = semask_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / name))
    validate_config(cfg)


@pytest.mark.parametrize("num_classes", ["6", "8"])
def test_num_classes_against_every_data_set(num_classes):
    text = message(quickstart("MODEL.SEM_SEG_HEAD.NUM_CLASSES", num_classes))
    for dataset, key in (("quickstart_sem_seg_train", "TRAIN"), ("quickstart_sem_seg_val", "TEST")):
        assert (
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES = {num_classes}: data set '{dataset}' "
            f"(DATASETS.{key}) has 7 classes" in text
        )


def test_test_set_class_count_is_checked_too():
    text = message(quickstart("DATASETS.TEST", "('ade20k_sem_seg_val',)"))
    assert "data set 'ade20k_sem_seg_val' (DATASETS.TEST) has 150 classes" in text
    assert "quickstart_sem_seg_train" not in text


@pytest.mark.parametrize(
    "config, misspelled, closest, kind, listed, unlisted",
    [
        (
            QUICKSTART,
            "ade20k_sem_seg_trian",
            "ade20k_sem_seg_train",
            "semantic data sets registered (for MODEL.MASK_FORMER.TEST.SEMANTIC_ON)",
            {"ade20k_sem_seg_train", "quickstart_sem_seg_val", "cityscapes_fine_sem_seg_val"},
            {"coco_2017_train", "coco_2017_train_panoptic", "ade20k_panoptic_train"},
        ),
        (
            PANOPTIC_CONFIG,
            "coco_2017_train_panoptc",
            "coco_2017_train_panoptic",
            "panoptic data sets registered (for MODEL.MASK_FORMER.TEST.PANOPTIC_ON)",
            {"coco_2017_train_panoptic", "ade20k_panoptic_val", "quickstart_panoptic_val"},
            {"coco_2017_train", "ade20k_sem_seg_train", "ade20k_instance_train"},
        ),
        (
            INSTANCE_CONFIG,
            "coco_2017_trian",
            "coco_2017_train",
            "instance data sets registered (for MODEL.MASK_FORMER.TEST.INSTANCE_ON)",
            {"coco_2017_train", "ade20k_instance_val"},
            {"coco_2017_train_panoptic", "ade20k_panoptic_train", "ade20k_sem_seg_train"},
        ),
    ],
)
def test_unregistered_data_set_names_close_matches_and_the_data_sets_of_its_kind(
    config, misspelled, closest, kind, listed, unlisted
):
    cfg = semask_cfg()
    cfg.merge_from_file(str(config))
    cfg.DATASETS.TRAIN = (misspelled,)
    text = message(cfg)
    line = next(line for line in text.splitlines() if "DATASETS.TRAIN = " in line)
    assert f"data set {misspelled!r} is not registered; closest: {closest!r}" in line
    assert f"; {kind}: " in line and line.endswith(" (see datasets/README.md)")
    names = set(line.split(f"{kind}: ")[1].removesuffix(" (see datasets/README.md)").split(", "))
    assert listed <= names and not names & unlisted


def test_data_set_checks_can_be_skipped_for_model_only_use():
    validate_config(quickstart("DATASETS.TRAIN", "('not_registered',)"), datasets=False)


def test_instance_data_set_needs_instance_outputs_and_its_thing_count():
    text = message(quickstart("DATASETS.TEST", "('coco_2017_val',)"))
    assert (
        "DATASETS.TEST = 'coco_2017_val': data set 'coco_2017_val' (evaluator_type 'coco') is "
        "scored on instances: it needs MODEL.MASK_FORMER.TEST.INSTANCE_ON True" in text
    )
    assert "data set 'coco_2017_val' (DATASETS.TEST) has 80 classes" in text


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("MODEL.SWIN.WINDOW_SIZE", "0", "must be an integer >= 1"),
        ("MODEL.SWIN.SEM_WINDOW_SIZE", "0", "must be an integer >= 1"),
        ("MODEL.SWIN.PATCH_SIZE", "0", "must be an integer >= 1"),
        ("MODEL.SWIN.DEPTHS", "[1, 1, 1]", "must be 4 integers (one per stage) >= 1"),
        ("MODEL.SWIN.NUM_HEADS", "[1, 2, 5, 8]", "stage 3 width 128 (MODEL.SWIN.EMBED_DIM)"),
        ("MODEL.SWIN.OUT_FEATURES", "['res6']", "must be a non-empty subset of"),
        ("MODEL.SWIN.DROP_PATH_RATE", "1.5", "must be in [0, 1]"),
        ("MODEL.MASK_FORMER.HIDDEN_DIM", "30", "must be divisible by MODEL.MASK_FORMER.NHEADS (4)"),
        ("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "0", "must be an integer >= 1"),
        ("MODEL.MASK_FORMER.DEC_LAYERS", "0", "must be an integer >= 1"),
        ("MODEL.MASK_FORMER.MASK_LOSS", "'bce'", "must be one of ['sigmoid_ce', 'focal']"),
        ("MODEL.MASK_FORMER.DICE_WEIGHT", "-1.0", "must be >= 0"),
        ("MODEL.SEM_SEG_HEAD.NUM_CLASSES", "-1", "must be an integer >= 1"),
        ("MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "3", "not a class id (0..6)"),
        ("INPUT.CROP.SIZE", "(0, 64)", "must be 2 integers >= 1 for INPUT.CROP.TYPE 'absolute'"),
        ("INPUT.CROP.TYPE", "'square'", "must be one of ['relative', 'relative_range', 'abs"),
        ("INPUT.MIN_SIZE_TEST", "-1", "must be an integer >= 0"),
        ("INPUT.DATASET_MAPPER_NAME", "'panoptic'", "must be one of ['coco_instance_lsj', "),
        (
            "INPUT.DATASET_MAPPER_NAME",
            "'semantic'",
            "gives no 'instances', which SeMaskMaskFormer trains on: must be one of "
            "['coco_instance_lsj', 'coco_panoptic_lsj', 'mask_former_instance', "
            "'mask_former_panoptic', 'mask_former_semantic']",
        ),
        ("SOLVER.IMS_PER_BATCH", "0", "must be an integer >= 1 divisible by the number of"),
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(key, value, expected):
    text = message(quickstart(key, value))
    line = next(line for line in text.splitlines() if line.strip().startswith(key + " = "))
    assert expected in line, text


@pytest.mark.parametrize("mapper", ["semantic", "mask_former_semantic"])
def test_semask_fpn_trains_with_either_mapper(mapper):
    """SeMaskFPN reads "sem_seg" alone: the mapper's instances are optional for it."""
    cfg = semask_cfg()
    cfg.merge_from_file(str(MIT_CONFIG))
    cfg.INPUT.DATASET_MAPPER_NAME = mapper
    validate_config(cfg)


def test_every_problem_is_reported_at_once():
    text = message(quickstart("MODEL.SWIN.WINDOW_SIZE", "0", "MODEL.MASK_FORMER.NHEADS", "0"))
    assert re.search(r"MODEL\.SWIN\.WINDOW_SIZE = 0\b", text)
    assert re.search(r"MODEL\.MASK_FORMER\.NHEADS = 0\b", text)


def test_mit_section_is_checked_only_for_a_mit_backbone():
    cfg = semask_cfg()
    cfg.merge_from_file(str(MIT_CONFIG))
    cfg.MODEL.MIT.SEM_WINDOW_SIZE = 0
    cfg.MODEL.MIT.NUM_HEADS = [1, 2, 5, 7]
    text = message(cfg)
    assert "MODEL.MIT.SEM_WINDOW_SIZE = 0: must be an integer >= 1" in text
    assert "stage 4 width 256 (MODEL.MIT.EMBED_DIMS) is not divisible by 7 heads" in text
    validate_config(quickstart("MODEL.MIT.SEM_WINDOW_SIZE", "0"))


def test_plain_swin_ignores_the_semantic_window():
    cfg = semask_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / "ade20k" / "mask2former" / "swin_tiny_bs16_160k.yaml"))
    cfg.MODEL.SWIN.SEM_WINDOW_SIZE = 0
    validate_config(cfg)


def test_ignore_value_must_match_the_data_sets():
    text = message(quickstart("MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "254"))
    assert "IGNORE_VALUE = 254: data set 'quickstart_sem_seg_train' (DATASETS.TRAIN) marks " in text


def _args(tmp_path, *opts):
    return argparse.Namespace(
        config_file=str(QUICKSTART), opts=["OUTPUT_DIR", str(tmp_path / "out"), *opts]
    )


@pytest.mark.parametrize("num_classes", ["5", "9"])
def test_setup_cfg_fails_before_anything_is_written_or_loaded(tmp_path, monkeypatch, num_classes):
    def no_loading(name):
        raise AssertionError(f"data set {name} loaded")

    monkeypatch.setattr(DatasetCatalog, "get", no_loading)
    with pytest.raises(ConfigError, match=rf"NUM_CLASSES = {num_classes}: data set"):
        setup_cfg(_args(tmp_path, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", num_classes))
    assert not (tmp_path / "out").exists()


def test_setup_cfg_names_window_size_zero(tmp_path):
    with pytest.raises(ConfigError, match=r"MODEL\.SWIN\.SEM_WINDOW_SIZE = 0"):
        setup_cfg(_args(tmp_path, "MODEL.SWIN.SEM_WINDOW_SIZE", "0"))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: D2SeMaskSwinTransformer(num_classes=3, window_size=0), "window_size"),
        (lambda: D2SeMaskSwinTransformer(num_classes=3, sem_window_size=0), "sem_window_size"),
        (lambda: D2SeMaskMiT(num_classes=3, sem_window_size=0), "sem_window_size"),
        (
            lambda: SemanticLayer(dim=8, num_classes=3, num_blocks=1, window_size=0),
            "window_size",
        ),
    ],
)
def test_constructors_reject_zero_windows(build, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b.* must be >= 1.*got 0"):
        build()


def test_plain_backbone_ignores_an_unused_semantic_window():
    model = D2SeMaskSwinTransformer(
        num_classes=3,
        embed_dim=8,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        num_sem_blocks=0,
        sem_window_size=0,
    )
    assert "prior_res2" not in model(torch.zeros(1, 3, 32, 32))
