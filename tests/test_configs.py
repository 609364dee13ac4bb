"""Every YAML under configs/ merges and builds; published recipes and parameter counts pinned."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO_ROOT, semask_cfg
from detectron2.modeling import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    build_model,
)

from semask.modeling.backbone import MIT_SIZES
from semask.modeling.criterion import ignore_aware_cross_entropy
from semask.modeling.meta_arch import build_criterion
from semask.modeling.pixel_decoder import PIXEL_DECODER_REGISTRY
from semask.modeling.transformer_decoder import TRANSFORMER_DECODER_REGISTRY

CONFIG_DIR = REPO_ROOT / "configs"
ALL_CONFIGS = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*.yaml"))
LEAVES = [p for p in ALL_CONFIGS if not Path(p).name.startswith("Base-")]

# Parameters of each leaf model, measured here. The SeMask Swin-T + MSDeformAttn (49,445,317) and
# SeMask Swin-L + MSFaPN (223,851,415) models equal the counts of the published code (150 classes).
# The plain Swin-T and Swin-L COCO panoptic models have Mask2Former's published sizes (47M, 216M).
# The MiT backbones inside the semask_mit_* models are pinned in test_backbone_mit.py.
PARAMS = {
    "ade20k/instance-segmentation/semask_swin_large_IN21k_384_bs16_160k_res640.yaml": 222_382_333,
    "ade20k/instance-segmentation/semask_swin_tiny_bs16_160k_res640.yaml": 49_288_067,
    "ade20k/instance-segmentation/swin_large_IN21k_384_bs16_160k_res640.yaml": 215_527_129,
    "ade20k/instance-segmentation/swin_tiny_bs16_160k_res640.yaml": 47_426_783,
    "ade20k/mask2former/fapn_semask_swin_large_IN21k_384_bs16_160k_res640.yaml": 226_745_479,
    "ade20k/mask2former/fapn_swin_large_IN21k_384_bs16_160k_res640.yaml": 219_601_875,
    "ade20k/mask2former/msfapn_semask_swin_large_IN21k_384_bs16_160k_res640.yaml": 223_851_415,
    "ade20k/mask2former/msfapn_swin_large_IN21k_384_bs16_160k_res640.yaml": 216_707_811,
    "ade20k/mask2former/semask_swin_base_IN21k_384_bs16_160k.yaml": 110_292_355,
    "ade20k/mask2former/semask_swin_large_IN21k_384_bs16_160k_res640.yaml": 222_632_383,
    "ade20k/mask2former/semask_swin_small_bs16_160k.yaml": 70_763_221,
    "ade20k/mask2former/semask_swin_tiny_bs16_160k.yaml": 49_445_317,
    "ade20k/mask2former/swin_base_IN21k_384_bs16_160k.yaml": 106_922_191,
    "ade20k/mask2former/swin_large_IN21k_384_bs16_160k_res640.yaml": 215_488_779,
    "ade20k/mask2former/swin_small_bs16_160k.yaml": 68_757_537,
    "ade20k/mask2former/swin_tiny_bs16_160k.yaml": 47_439_633,
    "ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml": 218_719_231,
    "ade20k/maskformer/swin_large_IN21k_384_bs16_160k_res640.yaml": 211_575_627,
    "ade20k/panoptic-segmentation/semask_swin_large_IN21k_384_bs16_160k_res640.yaml": 222_683_583,
    "ade20k/panoptic-segmentation/semask_swin_tiny_bs16_160k_res640.yaml": 49_445_317,
    "ade20k/panoptic-segmentation/swin_large_IN21k_384_bs16_160k_res640.yaml": 215_539_979,
    "ade20k/panoptic-segmentation/swin_tiny_bs16_160k_res640.yaml": 47_439_633,
    "ade20k/semantic_fpn/semask_mit_b0_bs16_80k_res512.yaml": 6_660_010,
    "ade20k/semantic_fpn/semask_mit_b1_bs16_80k_res512.yaml": 18_404_874,
    "ade20k/semantic_fpn/semask_mit_b2_bs16_80k_res512.yaml": 29_449_738,
    "ade20k/semantic_fpn/semask_mit_b3_bs16_80k_res512.yaml": 49_325_578,
    "ade20k/semantic_fpn/semask_mit_b4_bs16_80k_res512.yaml": 66_096_138,
    "ade20k/semantic_fpn/semask_mit_b5_bs16_80k_res512.yaml": 86_696_458,
    "ade20k/semantic_fpn/semask_swin_base_IN21k_384_bs16_80k_res512.yaml": 96_485_826,
    "ade20k/semantic_fpn/semask_swin_large_IN21k_384_bs16_80k_res640.yaml": 210_791_934,
    "ade20k/semantic_fpn/semask_swin_small_bs16_80k_res512.yaml": 55_973_652,
    "ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml": 34_655_748,
    "ade20k/semantic_fpn/swin_base_IN21k_384_bs16_80k_res512.yaml": 93_115_662,
    "ade20k/semantic_fpn/swin_large_IN21k_384_bs16_80k_res640.yaml": 203_648_330,
    "ade20k/semantic_fpn/swin_small_bs16_80k_res512.yaml": 53_967_968,
    "ade20k/semantic_fpn/swin_tiny_bs16_80k_res512.yaml": 32_650_064,
    "cityscapes/mask2former/semask_swin_large_IN21k_384_bs16_90k.yaml": 221_843_108,
    "cityscapes/mask2former/swin_large_IN21k_384_bs16_90k.yaml": 215_455_112,
    "cityscapes/semantic_fpn/semask_swin_base_IN21k_384_bs16_80k_res768.yaml": 95_948_071,
    "cityscapes/semantic_fpn/semask_swin_large_IN21k_384_bs16_80k_res768.yaml": 210_002_659,
    "cityscapes/semantic_fpn/semask_swin_small_bs16_80k_res768.yaml": 55_561_657,
    "cityscapes/semantic_fpn/semask_swin_tiny_bs16_80k_res768.yaml": 34_243_753,
    "cityscapes/semantic_fpn/swin_base_IN21k_384_bs16_80k_res768.yaml": 93_081_995,
    "cityscapes/semantic_fpn/swin_large_IN21k_384_bs16_80k_res768.yaml": 203_614_663,
    "cityscapes/semantic_fpn/swin_small_bs16_80k_res768.yaml": 53_934_301,
    "cityscapes/semantic_fpn/swin_tiny_bs16_80k_res768.yaml": 32_616_397,
    "coco/instance-segmentation/semask_swin_large_IN21k_384_bs16_100ep.yaml": 222_261_833,
    "coco/instance-segmentation/semask_swin_tiny_bs16_50ep.yaml": 49_225_167,
    "coco/instance-segmentation/swin_large_IN21k_384_bs16_100ep.yaml": 215_521_989,
    "coco/instance-segmentation/swin_tiny_bs16_50ep.yaml": 47_421_643,
    "coco/panoptic-segmentation/semask_swin_large_IN21k_384_bs16_100ep.yaml": 222_581_158,
    "coco/panoptic-segmentation/semask_swin_tiny_bs16_50ep.yaml": 49_391_852,
    "coco/panoptic-segmentation/swin_large_IN21k_384_bs16_100ep.yaml": 215_535_610,
    "coco/panoptic-segmentation/swin_tiny_bs16_50ep.yaml": 47_435_264,
    "coco_stuff_10k/semantic_fpn/semask_swin_base_IN21k_384_bs16_80k_res512.yaml": 96_572_031,
    "coco_stuff_10k/semantic_fpn/semask_swin_large_IN21k_384_bs16_80k_res640.yaml": 210_918_459,
    "coco_stuff_10k/semantic_fpn/semask_swin_small_bs16_80k_res512.yaml": 56_039_697,
    "coco_stuff_10k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml": 34_721_793,
    "coco_stuff_10k/semantic_fpn/swin_base_IN21k_384_bs16_80k_res512.yaml": 93_121_059,
    "coco_stuff_10k/semantic_fpn/swin_large_IN21k_384_bs16_80k_res640.yaml": 203_653_727,
    "coco_stuff_10k/semantic_fpn/swin_small_bs16_80k_res512.yaml": 53_973_365,
    "coco_stuff_10k/semantic_fpn/swin_tiny_bs16_80k_res512.yaml": 32_655_461,
}
# Data sets and classes of the configs under each folder (the longest matching folder wins).
DATASETS = {
    "ade20k": (("ade20k_sem_seg_train",), ("ade20k_sem_seg_val",), 150),
    "ade20k/panoptic-segmentation": (("ade20k_panoptic_train",), ("ade20k_panoptic_val",), 150),
    "ade20k/instance-segmentation": (("ade20k_instance_train",), ("ade20k_instance_val",), 100),
    "coco/panoptic-segmentation": (
        ("coco_2017_train_panoptic",),
        ("coco_2017_val_panoptic_with_sem_seg",),
        133,
    ),
    "coco/instance-segmentation": (("coco_2017_train",), ("coco_2017_val",), 80),
    "cityscapes": (("cityscapes_fine_sem_seg_train",), ("cityscapes_fine_sem_seg_val",), 19),
    "coco_stuff_10k": (("coco_stuff_10k_sem_seg_train",), ("coco_stuff_10k_sem_seg_test",), 171),
}


def load(name: str):
    cfg = semask_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / name))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_every_leaf_has_a_pinned_count():
    area_c = [p for p in LEAVES if not p.startswith("quickstart/")]
    assert sorted(area_c) == sorted(PARAMS)


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_merges_and_names_registered_components(name):
    text = (CONFIG_DIR / name).read_text()
    assert "!!python" not in text and "eval" not in text
    cfg = load(name)
    assert cfg.MODEL.META_ARCHITECTURE in META_ARCH_REGISTRY
    assert cfg.MODEL.BACKBONE.NAME in BACKBONE_REGISTRY
    assert cfg.MODEL.SEM_SEG_HEAD.NAME in SEM_SEG_HEADS_REGISTRY
    if cfg.MODEL.META_ARCHITECTURE == "SeMaskMaskFormer":
        assert cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME in PIXEL_DECODER_REGISTRY
        assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME in TRANSFORMER_DECODER_REGISTRY
    folders = [f for f in sorted(DATASETS, key=len, reverse=True) if name.startswith(f"{f}/")]
    if folders:
        train, test, classes = DATASETS[folders[0]]
        assert (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST) == (train, test)
        assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == classes


def test_leaves_state_only_what_differs():
    """Leaves inherit a base and leave the solver to it, but for the length of a longer published
    schedule (COCO Swin-L); MaskFormer has its own recipe."""
    for name in PARAMS:
        data = yaml.safe_load((CONFIG_DIR / name).read_text())
        assert "_BASE_" in data, name
        solver = set(data.get("SOLVER", {}))
        assert (
            solver <= {"MAX_ITER", "STEPS"} or "maskformer/" in name
        ), f"{name} repeats the solver"


def test_plain_baselines_drop_the_semantic_branch():
    for name in PARAMS:
        cfg = load(name)
        if Path(name).name.startswith(("swin_", "fapn_swin_", "msfapn_swin_")):
            assert cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer", name
            if cfg.MODEL.META_ARCHITECTURE == "SeMaskMaskFormer":
                assert cfg.MODEL.MASK_FORMER.CATE_WEIGHT == 0.0, name
        elif Path(name).name.startswith("semask_mit_"):
            assert cfg.MODEL.BACKBONE.NAME == "D2SeMaskMiT", name
            assert cfg.MODEL.MIT.NUM_SEM_BLOCKS == 1, name
        else:
            assert cfg.MODEL.BACKBONE.NAME == "D2SeMaskSwinTransformer", name
            assert cfg.MODEL.SWIN.NUM_SEM_BLOCKS == 1, name


@pytest.mark.parametrize("size", sorted(MIT_SIZES))
def test_mit_configs_use_segformer_sizes(size):
    cfg = load(f"ade20k/semantic_fpn/semask_mit_{size}_bs16_80k_res512.yaml")
    mit = cfg.MODEL.MIT
    assert tuple(mit.EMBED_DIMS) == MIT_SIZES[size]["embed_dims"]
    assert tuple(mit.DEPTHS) == MIT_SIZES[size]["depths"]
    assert (list(mit.NUM_HEADS), list(mit.SR_RATIOS)) == ([1, 2, 5, 8], [8, 4, 2, 1])
    assert (mit.DROP_PATH_RATE, cfg.MODEL.WEIGHTS) == (0.1, f"mit_{size}.pkl")


def _assert_same(ours, official: dict, where: str, skip=()) -> None:
    for key, value in official.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            _assert_same(ours[key], value, f"{where}.{key}", skip)
        else:
            got = ours[key]
            got = list(got) if isinstance(got, tuple) else got
            assert got == value, f"{where}.{key}: {got!r} != official {value!r}"


def test_mask2former_recipe_equals_official_merged_config(reference_dir):
    """The ADE20K base reproduces the official merged config apart from the micro model's sizes."""
    ours = load("ade20k/Base-ADE20K-Mask2Former.yaml")
    official = yaml.safe_load((reference_dir / "micro_msdeform_config.yaml").read_text())
    micro = {"HIDDEN_DIM", "DIM_FEEDFORWARD", "NUM_OBJECT_QUERIES", "DEC_LAYERS", "NUM_CLASSES"}
    micro |= {"CONVS_DIM", "MASK_DIM", "TRANSFORMER_ENC_LAYERS", "TRAIN_NUM_POINTS"}
    for section in ["SOLVER", "INPUT", "TEST", "DATASETS"]:
        _assert_same(ours[section], official[section], section)
    for section in ["MASK_FORMER", "SEM_SEG_HEAD"]:
        _assert_same(ours.MODEL[section], official["MODEL"][section], section, skip=micro)
    top = {k: official["MODEL"][k] for k in ["META_ARCHITECTURE", "PIXEL_MEAN", "PIXEL_STD"]}
    _assert_same(ours.MODEL, top, "MODEL")


def test_semantic_fpn_recipe():
    for name in [p for p in LEAVES if "semantic_fpn/" in p]:
        cfg = load(name)
        s = cfg.SOLVER
        assert (s.MAX_ITER, s.IMS_PER_BATCH, s.OPTIMIZER, s.BASE_LR) == (80000, 16, "ADAMW", 1e-4)
        assert (s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_EMBED) == (1e-4, 0.0, 0.0)
        assert (s.LR_SCHEDULER_NAME, s.POLY_LR_POWER, s.WARMUP_ITERS) == ("WarmupPolyLR", 1.0, 1500)
        assert s.WARMUP_METHOD == "linear"
        crop = 768 if "cityscapes" in name else 640 if "large" in name else 512
        assert tuple(cfg.INPUT.CROP.SIZE) == (crop, crop), name
        assert cfg.MODEL.MASK_FORMER.CATE_WEIGHT == 0.4, name
        assert "PRIOR_LOSS_WEIGHT" not in cfg.MODEL.SEM_SEG_HEAD, name
        assert cfg.MODEL.SEM_SEG_HEAD.DROPOUT == 0.1


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_builds_with_pinned_parameter_count(name):
    """Built on the meta device: the full construction runs, without allocating the weights."""
    cfg = load(name)
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    assert _count(model) == PARAMS[name]


@pytest.mark.parametrize(
    "name",
    [
        "ade20k/mask2former/semask_swin_tiny_bs16_160k.yaml",
        "ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml",
        "ade20k/semantic_fpn/semask_mit_b0_bs16_80k_res512.yaml",
    ],
)
def test_cpu_build_matches_meta_build(name):
    torch.manual_seed(0)
    model = build_model(load(name))
    assert type(model).__name__ == load(name).MODEL.META_ARCHITECTURE
    assert _count(model) == PARAMS[name]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_mit_config_trains_and_infers():
    """The MiT-B0 model: its prior loss is 0.4 x the cross-entropy of the prior it returns
    (without drop-path), and its outputs at a requested size are the resize of the full ones."""
    cfg = load("ade20k/semantic_fpn/semask_mit_b0_bs16_80k_res512.yaml")
    cfg.MODEL.MIT.DROP_PATH_RATE = 0.0
    cfg.MODEL.MASK_FORMER.TEST.RETURN_PRIOR = True
    torch.manual_seed(0)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=g)
    label = torch.randint(0, 150, (64, 96), generator=g)
    losses = model([{"image": image, "sem_seg": label}])
    assert set(losses) == {"loss_sem_seg", "loss_cate"}
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        (out,) = model.eval()([{"image": image, "height": 32, "width": 48}])
        (full,) = model([{"image": image}])
    assert out["sem_seg"].shape == (150, 32, 48)
    resized = F.interpolate(full["sem_seg"][None], size=(32, 48), mode="bilinear")[0]
    torch.testing.assert_close(out["sem_seg"], resized)
    prior_ce = ignore_aware_cross_entropy(full["sem_prior"][None], label[None])
    torch.testing.assert_close(losses["loss_cate"], 0.4 * prior_ce)


def test_maskformer_recipe():
    cfg = load("ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml")
    mf = cfg.MODEL.MASK_FORMER
    assert (mf.MASK_LOSS, mf.TRANSFORMER_DECODER_NAME) == ("focal", "StandardTransformerDecoder")
    assert (mf.CLASS_WEIGHT, mf.MASK_WEIGHT, mf.DICE_WEIGHT, mf.DEC_LAYERS) == (1.0, 20.0, 1.0, 6)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.WARMUP_ITERS) == (
        6e-5,
        0.01,
        1500,
    )
    weights = build_criterion(cfg).weight_dict
    assert sorted(k for k in weights if k.startswith("loss_mask")) == [
        "loss_mask",
        *(f"loss_mask_{i}" for i in range(5)),
    ]
