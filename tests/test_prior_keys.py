"""The MODEL.SEMASK prior keys and their published spellings: the precedence rule, its WARNING,
the resolver on a bare merged config, and the same model from either spelling."""

import logging

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from semask.data.targets import semantic_instances
from semask.engine.validation import ConfigError, validate_config
from semask.modeling.semantic_prior import (
    effective_key,
    prior_key_conflicts,
    prior_settings,
    published_key,
)

# Non-default values of the four keys.
VALUES = {"NUM_SEM_BLOCKS": 2, "SEM_WINDOW_SIZE": 2, "CATE_WEIGHT": 0.7, "RETURN_PRIOR": True}
PUBLISHED = {
    "CATE_WEIGHT": "MODEL.MASK_FORMER.CATE_WEIGHT",
    "RETURN_PRIOR": "MODEL.MASK_FORMER.TEST.RETURN_PRIOR",
}
TINY = {
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 5,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 32,
    "MODEL.SEM_SEG_HEAD.MASK_DIM": 32,
    "MODEL.MASK_FORMER.HIDDEN_DIM": 32,
    "MODEL.MASK_FORMER.NHEADS": 2,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD": 32,
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 4,
    "MODEL.MASK_FORMER.DEC_LAYERS": 2,
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS": 64,
    "MODEL.WEIGHTS": "",
    "MODEL.DEVICE": "cpu",
}
SWIN = {
    "MODEL.SWIN.EMBED_DIM": 16,
    "MODEL.SWIN.DEPTHS": [1, 1, 1, 1],
    "MODEL.SWIN.NUM_HEADS": [1, 1, 2, 2],
    "MODEL.SWIN.WINDOW_SIZE": 4,
    "MODEL.SWIN.PRETRAIN_IMG_SIZE": 64,
    "MODEL.SWIN.DROP_PATH_RATE": 0.0,
}
MIT = {
    "MODEL.MIT.EMBED_DIMS": [16, 16, 32, 32],
    "MODEL.MIT.NUM_HEADS": [1, 1, 2, 2],
    "MODEL.MIT.DEPTHS": [1, 1, 1, 1],
    "MODEL.MIT.DROP_PATH_RATE": 0.0,
}
FAMILIES = {
    "swin_mask2former": ("quickstart/semask_swin_mask2former_quickstart.yaml", "MODEL.SWIN", SWIN),
    "mit_fpn": ("ade20k/semantic_fpn/semask_mit_b0_bs16_80k_res512.yaml", "MODEL.MIT", MIT),
    "swin_fpn": ("ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml", "MODEL.SWIN", SWIN),
}


def spelled(family: str, spelling: str) -> CfgNode:
    """``family``'s tiny config with :data:`VALUES` under the ``"new"`` (MODEL.SEMASK) or the
    ``"published"`` keys, merged on a bare config (no setup_cfg)."""
    config, section, backbone = FAMILIES[family]
    cfg = semask_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs" / config))
    for key, value in {**TINY, **backbone}.items():
        cfg.merge_from_list([key, repr(value)])
    for name, value in VALUES.items():
        key = (
            f"MODEL.SEMASK.{name}"
            if spelling == "new"
            else PUBLISHED.get(name, f"{section}.{name}")
        )
        cfg.merge_from_list([key, repr(value)])
    return cfg


def _run(cfg: CfgNode):
    """State-dict shapes, training losses and inference outputs of the model of ``cfg``."""
    torch.manual_seed(0)
    model = build_model(cfg)
    generator = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=generator)
    label = torch.randint(0, 5, (64, 64), generator=generator)
    torch.manual_seed(2)
    losses = model([{"image": image, "sem_seg": label, "instances": semantic_instances(label)}])
    with torch.no_grad():
        (output,) = model.eval()([{"image": image}])
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return model, shapes, losses, output


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_old_and_new_spelling_build_the_same_model(family):
    new_model, new_shapes, new_losses, new_out = _run(spelled(family, "new"))
    _, old_shapes, old_losses, old_out = _run(spelled(family, "published"))
    assert new_shapes == old_shapes
    assert new_losses.keys() == old_losses.keys() and "loss_cate" in new_losses
    for key in new_losses:
        torch.testing.assert_close(new_losses[key], old_losses[key], rtol=0, atol=0)
    assert {"sem_seg", "sem_prior", "stage_priors"} <= set(new_out)
    for key in ("sem_seg", "sem_prior"):
        torch.testing.assert_close(new_out[key], old_out[key], rtol=0, atol=0)
    # the values took effect: two semantic blocks in windows of 2, loss weight 0.7
    assert new_model.backbone.num_sem_blocks == 2 and new_model.backbone.sem_window_size == 2
    criterion = getattr(new_model, "criterion", None)
    if criterion is not None:
        assert criterion.weight_dict["loss_cate"] == 0.7
    else:
        assert new_model.sem_seg_head.cate_weight == 0.7


def test_the_values_change_the_model():
    """Control for the test above: the defaults (one semantic block) build another model."""
    cfg = spelled("mit_fpn", "new")
    cfg.MODEL.SEMASK.NUM_SEM_BLOCKS = None
    default = build_model(cfg)
    assert default.backbone.num_sem_blocks == 1
    assert set(default.state_dict()) < set(build_model(spelled("mit_fpn", "new")).state_dict())


def test_resolver_on_a_bare_config_reads_the_published_defaults():
    settings = prior_settings(semask_cfg())
    assert (settings.num_sem_blocks, settings.sem_window_size) == (1, 7)
    assert (settings.cate_weight, settings.return_prior) == (0.4, False)
    assert settings.windowed_stages == (0, 1)


def test_the_backbone_in_use_selects_the_published_section():
    cfg = semask_cfg()
    cfg.MODEL.SWIN.SEM_WINDOW_SIZE, cfg.MODEL.MIT.SEM_WINDOW_SIZE = 12, 5
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskMiT"
    assert prior_settings(cfg).sem_window_size == 5
    assert published_key(cfg, "SEM_WINDOW_SIZE") == "MODEL.MIT.SEM_WINDOW_SIZE"
    assert prior_settings(cfg, "MODEL.SWIN").sem_window_size == 12
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskSwinTransformer"
    assert prior_settings(cfg).sem_window_size == 12
    with pytest.raises(KeyError, match="MODEL.SEMASK.WINDOWED_STAGES is not one of"):
        published_key(cfg, "WINDOWED_STAGES")


@pytest.mark.parametrize("name", sorted(VALUES))
def test_a_set_semask_key_wins(name):
    other = {"NUM_SEM_BLOCKS": 0, "SEM_WINDOW_SIZE": 3, "CATE_WEIGHT": 0.0, "RETURN_PRIOR": False}
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskSwinTransformer"
    old = published_key(cfg, name)
    assert effective_key(cfg, name) == old
    cfg.merge_from_list([old, repr(VALUES[name])])
    assert getattr(prior_settings(cfg), name.lower()) == VALUES[name]
    cfg.merge_from_list([f"MODEL.SEMASK.{name}", repr(other[name])])
    assert effective_key(cfg, name) == f"MODEL.SEMASK.{name}"
    assert getattr(prior_settings(cfg), name.lower()) == other[name]
    assert prior_key_conflicts(cfg) == [
        f"MODEL.SEMASK.{name} = {other[name]!r} overrides {old} = {VALUES[name]!r} (a "
        "MODEL.SEMASK key, when set, wins over its published spelling)"
    ]


def test_no_conflict_when_the_published_key_is_at_its_default_or_agrees():
    cfg = semask_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskMiT"
    cfg.MODEL.SEMASK.SEM_WINDOW_SIZE = 3  # MODEL.MIT.SEM_WINDOW_SIZE stays at its default 7
    cfg.MODEL.SEMASK.CATE_WEIGHT = cfg.MODEL.MASK_FORMER.CATE_WEIGHT = 1.0
    assert prior_key_conflicts(cfg) == []


def test_new_keys_merge_from_yaml(tmp_path):
    path = tmp_path / "new.yaml"
    path.write_text("MODEL:\n  SEMASK:\n    NUM_SEM_BLOCKS: 0\n    RETURN_PRIOR: True\n")
    cfg = semask_cfg()
    cfg.merge_from_file(str(path))
    settings = prior_settings(cfg)
    assert settings.num_sem_blocks == 0 and settings.return_prior is True


def test_validation_warns_naming_both_keys(caplog):
    cfg = spelled("swin_mask2former", "published")
    cfg.merge_from_list(["MODEL.SEMASK.CATE_WEIGHT", "0.2"])
    with caplog.at_level(logging.WARNING):
        validate_config(cfg, datasets=False)
    assert (
        "MODEL.SEMASK.CATE_WEIGHT = 0.2 overrides MODEL.MASK_FORMER.CATE_WEIGHT = 0.7"
        in caplog.text
    )


@pytest.mark.parametrize(
    "key, value, problem",
    [
        (
            "MODEL.SEMASK.SEM_WINDOW_SIZE",
            "0",
            "MODEL.SEMASK.SEM_WINDOW_SIZE = 0: must be an integer",
        ),
        (
            "MODEL.SEMASK.NUM_SEM_BLOCKS",
            "-1",
            "MODEL.SEMASK.NUM_SEM_BLOCKS = -1: must be an integer",
        ),
        ("MODEL.SEMASK.CATE_WEIGHT", "-0.5", "MODEL.SEMASK.CATE_WEIGHT = -0.5: must be >= 0"),
        ("MODEL.SEMASK.RETURN_PRIOR", "1", "MODEL.SEMASK.RETURN_PRIOR = 1: must be True or False"),
        ("MODEL.MIT.SEM_WINDOW_SIZE", "0", "MODEL.MIT.SEM_WINDOW_SIZE = 0: must be an integer"),
    ],
)
def test_validation_names_the_key_in_effect(key, value, problem):
    cfg = spelled("mit_fpn", "published")
    cfg.merge_from_list([key, value])
    with pytest.raises(ConfigError, match=problem):
        validate_config(cfg, datasets=False)


def test_validation_ignores_a_published_key_that_a_semask_key_overrides():
    cfg = spelled("mit_fpn", "published")
    cfg.merge_from_list(["MODEL.MIT.SEM_WINDOW_SIZE", "0", "MODEL.SEMASK.SEM_WINDOW_SIZE", "3"])
    validate_config(cfg, datasets=False)
