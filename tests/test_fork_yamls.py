"""Every published YAML of the Detectron2 forks, merged into this project's config, either builds
the published architecture or is refused with a message naming the project config to use.

``tests/fixtures/fork_yamls/`` holds, per published file, the architecture keys its ``_BASE_``
chain sets (made by ``tools/reference_fixtures/fork_yaml_facts.py``)."""

import re
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.modeling import META_ARCH_REGISTRY

from semask.engine import ConfigError, validate_config

FORK_YAMLS = Path(__file__).resolve().parent / "fixtures" / "fork_yamls"
ALL = sorted(p.relative_to(FORK_YAMLS).as_posix() for p in FORK_YAMLS.rglob("*.yaml"))
M2F = "SeMask-Mask2Former/configs/{}/semantic-segmentation/semask_swin/"
FAPN = "SeMask-FAPN/" + M2F.format("ade20k")
# The published SeMask Mask2Former-family models; each builds its fork's pixel decoder.
BUILDS = {
    FAPN + "fapn_maskformer2_semask_swin_large_IN21k_384_bs16_160k_res640.yaml": "PixelFANDecoder",
    FAPN
    + "msfapn_maskformer2_semask_swin_large_IN21k_384_bs16_160k_res640.yaml": (
        "MSDeformAttnPixelFANDecoder"
    ),
    M2F.format("ade20k")
    + "maskformer2_semask_swin_large_IN21k_384_bs16_160k_res640.yaml": "MSDeformAttnPixelDecoder",
    M2F.format("cityscapes")
    + "maskformer2_semask_swin_large_IN21k_384_bs16_90k.yaml": "MSDeformAttnPixelDecoder",
}
MASKFORMER_LARGE = (
    "SeMask-MaskFormer/configs/ade20k-150/semask_swin/"
    "maskformer_semask_swin_large_IN21k_384_bs16_160k_res640.yaml"
)
PROJECT_MASKFORMER = "configs/ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml"


def merged(*files: Path):
    cfg = semask_cfg()
    for path in files:
        cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def build_on_meta(cfg):
    with torch.device("meta"):
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


def test_every_published_file_is_covered():
    trees = {name.split("/configs/")[0] for name in ALL}
    assert trees == {"SeMask-MaskFormer", "SeMask-FAPN/SeMask-Mask2Former", "SeMask-Mask2Former"}
    assert len(ALL) == 43 and set(BUILDS) < set(ALL) and MASKFORMER_LARGE in ALL


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_published_mask2former_files_build_their_architecture(name):
    cfg = merged(FORK_YAMLS / name)
    validate_config(cfg, datasets=False)
    model = build_on_meta(cfg)
    head = model.sem_seg_head
    assert type(head.predictor).__name__ == "MultiScaleMaskedTransformerDecoder"
    assert type(head.pixel_decoder).__name__ == BUILDS[name]
    assert model.backbone.windowed_stages == {0, 1}


@pytest.mark.parametrize("name", [n for n in ALL if n not in BUILDS])
def test_other_files_are_refused_naming_the_config_to_use(name):
    cfg = merged(FORK_YAMLS / name)
    with pytest.raises(ConfigError) as refused:
        validate_config(cfg, datasets=False)
    message = str(refused.value)
    suggested = re.findall(r"configs/[\w/*.-]+", message)
    assert suggested, message
    for path in suggested:
        assert list(REPO_ROOT.glob(path.rstrip("/"))), f"{path} (named for {name}) does not exist"
    if cfg.MODEL.META_ARCHITECTURE == "SeMaskMaskFormer":
        with pytest.raises(ValueError, match=re.escape(suggested[0])):
            build_on_meta(cfg)


def test_maskformer_file_is_refused_for_its_missing_decoder():
    """The SeMask-L MaskFormer file names no transformer decoder: refused, not built as the
    Mask2Former decoder of this project's default."""
    cfg = merged(FORK_YAMLS / MASKFORMER_LARGE)
    with pytest.raises(ValueError) as refused:
        build_on_meta(cfg)
    message = str(refused.value)
    assert "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = 'MultiScaleMaskedTransformerDecoder'" in (
        message
    )
    assert "'StandardTransformerDecoder'" in message and PROJECT_MASKFORMER in message


def test_maskformer_file_over_the_project_config_builds_the_published_model():
    cfg = merged(REPO_ROOT / PROJECT_MASKFORMER, FORK_YAMLS / MASKFORMER_LARGE)
    validate_config(cfg, datasets=False)
    model = build_on_meta(cfg)
    assert type(model.sem_seg_head.predictor).__name__ == "StandardTransformerDecoder"
    assert type(model.sem_seg_head.pixel_decoder).__name__ == "BasePixelDecoder"
    assert model.backbone.windowed_stages == {0, 1, 2}


MF = "SeMask-MaskFormer/configs/ade20k-150/"
M2F_ADE = "SeMask-Mask2Former/configs/ade20k/semantic-segmentation/"


@pytest.mark.parametrize(
    "name, problem, suggested",
    [
        (MF + "Base-ADE20K-150.yaml", "MODEL.META_ARCHITECTURE = 'GeneralizedRCNN'", "maskformer/"),
        (
            MF + "swin/maskformer_swin_tiny_bs16_160k.yaml",
            "MODEL.META_ARCHITECTURE = 'MaskFormer'",
            "maskformer/swin_large_IN21k_384_bs16_160k_res640.yaml",
        ),
        (
            M2F_ADE + "swin/maskformer2_swin_tiny_bs16_160k.yaml",
            "MODEL.SEM_SEG_HEAD.NAME = 'MaskFormerHead'",
            "mask2former/swin_large_IN21k_384_bs16_160k_res640.yaml",
        ),
        (
            MF + "per_pixel_baseline_R50_bs16_160k.yaml",
            "MODEL.SEM_SEG_HEAD.NAME = 'PerPixelBaselineHead'",
            "configs/*/semantic_fpn/",
        ),
        (
            M2F_ADE + "semask_swin/semask_maskformer2_R50_bs16_160k.yaml",
            "MODEL.BACKBONE.NAME = 'build_resnet_backbone'",
            "mask2former/semask_swin_large",
        ),
    ],
)
def test_refusal_names_the_key_and_the_family_config(name, problem, suggested):
    with pytest.raises(ConfigError) as refused:
        validate_config(merged(FORK_YAMLS / name), datasets=False)
    line = next(line for line in str(refused.value).splitlines() if problem in line)
    assert suggested in line, line
