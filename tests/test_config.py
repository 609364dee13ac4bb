"""add_semask_config: official keys merge, defaults are the official ones, typos are rejected."""

import pytest
import yaml
from conftest import REPO_ROOT, semask_cfg

from semask.engine import build_cfg, override_pairs

# Keys the official SeMask Detectron2 configs set, with non-default values.
OFFICIAL_STYLE_OVERRIDES = """
MODEL:
  META_ARCHITECTURE: SeMaskMaskFormer
  BACKBONE: {NAME: D2SeMaskSwinTransformer}
  SWIN:
    EMBED_DIM: 192
    DEPTHS: [2, 2, 18, 2]
    NUM_HEADS: [6, 12, 24, 48]
    WINDOW_SIZE: 12
    SEM_WINDOW_SIZE: 12
    NUM_SEM_BLOCKS: 1
    APE: False
    DROP_PATH_RATE: 0.3
    PATCH_NORM: True
    PRETRAIN_IMG_SIZE: 384
    USE_CHECKPOINT: True
  SEM_SEG_HEAD:
    NAME: BranchMaskFormerHead
    IGNORE_VALUE: 255
    NUM_CLASSES: 150
    CONVS_DIM: 256
    MASK_DIM: 256
    NORM: GN
    PIXEL_DECODER_NAME: MSDeformAttnPixelFANDecoder
    IN_FEATURES: [res2, res3, res4, res5]
    DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES: [res3, res4, res5]
    COMMON_STRIDE: 4
    TRANSFORMER_ENC_LAYERS: 6
  MASK_FORMER:
    TRANSFORMER_DECODER_NAME: MultiScaleMaskedTransformerDecoder
    TRANSFORMER_IN_FEATURE: multi_scale_pixel_decoder
    DEEP_SUPERVISION: True
    NO_OBJECT_WEIGHT: 0.1
    CLASS_WEIGHT: 2.0
    MASK_WEIGHT: 5.0
    DICE_WEIGHT: 5.0
    CATE_WEIGHT: 0.4
    HIDDEN_DIM: 256
    NUM_OBJECT_QUERIES: 100
    NHEADS: 8
    DROPOUT: 0.0
    DIM_FEEDFORWARD: 2048
    ENC_LAYERS: 0
    PRE_NORM: False
    ENFORCE_INPUT_PROJ: False
    SIZE_DIVISIBILITY: 32
    DEC_LAYERS: 10
    TRAIN_NUM_POINTS: 12544
    OVERSAMPLE_RATIO: 3.0
    IMPORTANCE_SAMPLE_RATIO: 0.75
    TEST:
      SEMANTIC_ON: True
      INSTANCE_ON: False
      PANOPTIC_ON: False
      OVERLAP_THRESHOLD: 0.8
      OBJECT_MASK_THRESHOLD: 0.8
SOLVER:
  OPTIMIZER: ADAMW
  BACKBONE_MULTIPLIER: 0.1
  WEIGHT_DECAY_EMBED: 0.0
  LR_SCHEDULER_NAME: WarmupPolyLR
  POLY_LR_POWER: 0.9
  POLY_LR_CONSTANT_ENDING: 0.0
  CLIP_GRADIENTS: {ENABLED: True, CLIP_TYPE: full_model, CLIP_VALUE: 0.01, NORM_TYPE: 2.0}
  AMP: {ENABLED: True}
INPUT:
  MIN_SIZE_TRAIN: [320, 384, 448]
  MIN_SIZE_TRAIN_SAMPLING: choice
  CROP: {ENABLED: True, TYPE: absolute, SIZE: [640, 640], SINGLE_CATEGORY_MAX_AREA: 1.0}
  COLOR_AUG_SSD: True
  SIZE_DIVISIBILITY: 640
  FORMAT: RGB
  DATASET_MAPPER_NAME: mask_former_semantic
TEST:
  AUG: {ENABLED: True, MIN_SIZES: [320, 480, 640], MAX_SIZE: 4480, FLIP: True}
"""


def test_official_defaults():
    cfg = semask_cfg()
    assert cfg.MODEL.MASK_FORMER.CATE_WEIGHT == 0.4
    assert cfg.MODEL.SWIN.NUM_SEM_BLOCKS == 1
    assert cfg.MODEL.SWIN.SEM_WINDOW_SIZE == cfg.MODEL.SWIN.WINDOW_SIZE == 7
    assert cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS == 12544
    assert cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA == 1.0
    assert cfg.SOLVER.POLY_LR_POWER == 0.9


def test_official_style_keys_merge(tmp_path):
    path = tmp_path / "official.yaml"
    path.write_text(OFFICIAL_STYLE_OVERRIDES)
    cfg = semask_cfg()
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.SWIN.DEPTHS == [2, 2, 18, 2]
    assert cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME == "MSDeformAttnPixelFANDecoder"
    assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 10
    assert cfg.TEST.AUG.MIN_SIZES == (320, 480, 640)


@pytest.mark.parametrize("name", ["micro_msdeform", "micro_msfapn"])
def test_published_full_configs_merge_without_unknown_keys(reference_dir, name):
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / f"{name}_config.yaml"))
    published = yaml.safe_load((reference_dir / f"{name}_config.yaml").read_text())
    assert (
        cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
        == published["MODEL"]["SEM_SEG_HEAD"]["PIXEL_DECODER_NAME"]
    )
    assert cfg.MODEL.SWIN.EMBED_DIM == 8
    assert cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == 8


def test_unknown_key_is_rejected_with_its_name(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("MODEL:\n  SWIN:\n    NUM_SEM_BLOKS: 2\n")
    cfg = semask_cfg()
    with pytest.raises(KeyError, match=r"MODEL\.SWIN\.NUM_SEM_BLOKS"):
        cfg.merge_from_file(str(path))


def test_override_pairs_drop_separators_and_name_a_key_without_value():
    assert override_pairs(["--", "A.B", "1", "--", "C", "--"]) == ["A.B", "1", "C", "--"]
    assert override_pairs(()) == []
    with pytest.raises(ValueError, match=r"config override 'MODEL.DEVICE' has no value"):
        override_pairs(["MODEL.WEIGHTS", "", "MODEL.DEVICE"])


def test_build_cfg_takes_overrides_after_a_separator():
    config = str(REPO_ROOT / "configs/quickstart/semask_swin_mask2former_quickstart.yaml")
    cfg = build_cfg(config, ["--", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5", "MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 5
    with pytest.raises(ValueError, match="'SOLVER.MAX_ITER' has no value"):
        build_cfg(config, ["SOLVER.MAX_ITER"])
