"""Each family's configs window the semantic layers of its fork's stages; a config that names the
other family's decoder is refused at start-up, one that windows other stages is warned about."""

import pytest
from conftest import REPO_ROOT, semask_cfg

from semask.engine import ConfigError, validate_config

CONFIG_DIR = REPO_ROOT / "configs"
# The published rules, read from each fork's Swin backbone.
MASK2FORMER_STAGES = [0, 1]  # SeMask-Mask2Former / SeMask-FAPN
MASKFORMER_STAGES = [0, 1, 2]  # SeMask-MaskFormer
MASK2FORMER = sorted(
    p.relative_to(CONFIG_DIR).as_posix()
    for p in [*CONFIG_DIR.glob("*/mask2former/*.yaml"), *CONFIG_DIR.glob("quickstart/*.yaml")]
)
MASKFORMER = sorted(
    p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.glob("*/maskformer/*.yaml")
)
SEMASK_L_MASKFORMER = "ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml"


def load(name: str, *opts: str):
    cfg = semask_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / name))
    cfg.merge_from_list(list(opts))
    return cfg


def refusal(cfg) -> str:
    with pytest.raises(ConfigError) as refused:
        validate_config(cfg, datasets=False)
    return str(refused.value)


def test_both_families_have_configs():
    assert len(MASK2FORMER) >= 13 and MASKFORMER == [
        "ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml",
        "ade20k/maskformer/swin_large_IN21k_384_bs16_160k_res640.yaml",
    ]


@pytest.mark.parametrize("name", MASK2FORMER)
def test_mask2former_configs_window_stages_0_1(name):
    cfg = load(name)
    assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "MultiScaleMaskedTransformerDecoder"
    assert list(cfg.MODEL.SEMASK.WINDOWED_STAGES) == MASK2FORMER_STAGES


@pytest.mark.parametrize("name", MASKFORMER)
def test_maskformer_configs_window_stages_0_1_2(name):
    cfg = load(name)
    assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder"
    assert list(cfg.MODEL.SEMASK.WINDOWED_STAGES) == MASKFORMER_STAGES


def warning(cfg, caplog) -> str:
    with caplog.at_level("WARNING", logger="semask.engine.validation"):
        validate_config(cfg, datasets=False)
    return "\n".join(record.getMessage() for record in caplog.records)


def test_maskformer_with_the_mask2former_rule_is_warned_about(caplog):
    message = warning(load(SEMASK_L_MASKFORMER, "MODEL.SEMASK.WINDOWED_STAGES", "[0, 1]"), caplog)
    assert "MODEL.SEMASK.WINDOWED_STAGES = [0, 1]: the SeMask-MaskFormer models" in message
    assert "window stages [0, 1, 2]" in message and "configs/ade20k/maskformer/" in message


def test_mask2former_with_the_maskformer_rule_is_warned_about(caplog):
    name = "ade20k/mask2former/semask_swin_tiny_bs16_160k.yaml"
    message = warning(load(name, "MODEL.SEMASK.WINDOWED_STAGES", "[2, 1, 0]"), caplog)
    assert "MODEL.SEMASK.WINDOWED_STAGES = [2, 1, 0]" in message
    assert "window stages [0, 1]" in message and "configs/ade20k/mask2former/" in message


def test_plain_swin_and_order_do_not_matter(caplog):
    plain = "ade20k/maskformer/swin_large_IN21k_384_bs16_160k_res640.yaml"
    assert warning(load(plain, "MODEL.SEMASK.WINDOWED_STAGES", "[0]"), caplog) == ""
    cfg = load(SEMASK_L_MASKFORMER, "MODEL.SEMASK.WINDOWED_STAGES", "[2, 0, 1]")
    assert warning(cfg, caplog) == ""


def test_decoder_must_match_the_decoder_input():
    cfg = load(
        SEMASK_L_MASKFORMER,
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE",
        "'multi_scale_pixel_decoder'",
    )
    message = refusal(cfg)
    assert "TRANSFORMER_DECODER_NAME = 'StandardTransformerDecoder'" in message
    assert "'multi_scale_pixel_decoder' is the SeMask-Mask2Former / SeMask-FAPN design" in message
