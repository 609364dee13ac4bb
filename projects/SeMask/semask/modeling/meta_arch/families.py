"""The two published mask-classification families and the rules a config of each must follow.

A published checkpoint computes its published function only with its fork's architecture, and
the forks' YAML files do not always name it: a SeMask-MaskFormer YAML names no transformer
decoder, and no fork YAML names the windowed semantic-layer stages. Both forks do set
``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE``, and it tells them apart: Mask2Former's decoder reads
the multi-scale pixel-decoder outputs, MaskFormer's reads one map. So a config's family is read
from that key, and the transformer decoder and the windowed stages must be that family's.
"""

from dataclasses import dataclass
from typing import List, Tuple

from detectron2.config import CfgNode

from ...config import config_value
from ..semantic_prior import prior_settings

SEMASK_SWIN = "D2SeMaskSwinTransformer"
MULTI_SCALE_INPUT = "multi_scale_pixel_decoder"


@dataclass(frozen=True)
class Family:
    """One published fork: its transformer decoder, its windowed stages, the configs to use."""

    fork: str
    transformer_decoder: str
    windowed_stages: Tuple[int, ...]
    config: str
    plain_config: str


MASK2FORMER = Family(
    fork="SeMask-Mask2Former / SeMask-FAPN",
    transformer_decoder="MultiScaleMaskedTransformerDecoder",
    windowed_stages=(0, 1),
    config="configs/ade20k/mask2former/semask_swin_large_IN21k_384_bs16_160k_res640.yaml",
    plain_config="configs/ade20k/mask2former/swin_large_IN21k_384_bs16_160k_res640.yaml",
)
MASKFORMER = Family(
    fork="SeMask-MaskFormer",
    transformer_decoder="StandardTransformerDecoder",
    windowed_stages=(0, 1, 2),
    config="configs/ade20k/maskformer/semask_swin_large_IN21k_384_bs16_160k_res640.yaml",
    plain_config="configs/ade20k/maskformer/swin_large_IN21k_384_bs16_160k_res640.yaml",
)

# Names that only the forks' YAML files use (or a merged fork file leaves at detectron2's default),
# with what this project builds instead ({config}, {plain}: the configs of the family the file's
# TRANSFORMER_IN_FEATURE selects).
_PLAIN = (
    "is the forks' model without SeMask; this project's are SeMaskMaskFormer + "
    "BranchMaskFormerHead with MODEL.BACKBONE.NAME 'D2SwinTransformer': start from {plain}"
)
_PER_PIXEL = (
    "is SeMask-MaskFormer's per-pixel baseline, not part of this project; its per-pixel models "
    "are SeMaskFPN (configs/*/semantic_fpn/)"
)
_RESNET = (
    "the forks' ResNet files are only bases of their Swin configs (no published SeMask model "
    "uses a ResNet): start from {config}"
)
_NO_MODEL = (
    "is detectron2's default (object detection): the config names no SeMask model (the forks' "
    "Base files name none): start from {config}"
)
FORK_ONLY_NAMES = {
    ("MODEL.META_ARCHITECTURE", "GeneralizedRCNN"): _NO_MODEL,
    ("MODEL.META_ARCHITECTURE", "MaskFormer"): _PLAIN,
    ("MODEL.SEM_SEG_HEAD.NAME", "MaskFormerHead"): _PLAIN,
    ("MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselineHead"): _PER_PIXEL,
    ("MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselinePlusHead"): _PER_PIXEL,
}
# Backbones of the forks' ResNet files, refused in a mask-classification model (a SeMask head
# reads semantic priors that a ResNet does not make).
RESNET_BACKBONES = ("build_resnet_backbone", "build_resnet_deeplab_backbone")
MASK_CLASSIFICATION = ("SeMaskMaskFormer", "MaskFormer")


def family_of(cfg: CfgNode) -> Family:
    """The family selected by ``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE``."""
    in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
    return MASK2FORMER if in_feature == MULTI_SCALE_INPUT else MASKFORMER


def fork_name_problems(cfg: CfgNode) -> List[str]:
    """``KEY = value: why`` for every name in ``cfg`` that only a fork's YAML uses."""
    family = family_of(cfg)
    found = [
        (key, name, why)
        for (key, name), why in FORK_ONLY_NAMES.items()
        if config_value(cfg, key) == name
    ]
    backbone = cfg.MODEL.BACKBONE.NAME
    if backbone in RESNET_BACKBONES and cfg.MODEL.META_ARCHITECTURE in MASK_CLASSIFICATION:
        found.append(("MODEL.BACKBONE.NAME", backbone, _RESNET))
    return [
        f"{key} = {name!r}: " + why.format(config=family.config, plain=family.plain_config)
        for key, name, why in found
    ]


def decoder_problems(cfg: CfgNode) -> List[str]:
    """The transformer decoder must be the one of the family its input selects."""
    family = family_of(cfg)
    mf = cfg.MODEL.MASK_FORMER
    if mf.TRANSFORMER_DECODER_NAME == family.transformer_decoder:
        return []
    return [
        f"MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = {mf.TRANSFORMER_DECODER_NAME!r}: "
        f"TRANSFORMER_IN_FEATURE {mf.TRANSFORMER_IN_FEATURE!r} is the {family.fork} design, "
        f"whose decoder is {family.transformer_decoder!r} (a {MASKFORMER.fork} YAML names no "
        f"decoder); start from {family.config}"
    ]


def windowing_problems(cfg: CfgNode) -> List[str]:
    """A SeMask Swin backbone must window the semantic layers of its family's stages."""
    if cfg.MODEL.BACKBONE.NAME != SEMASK_SWIN:
        return []
    prior = prior_settings(cfg)
    if not prior.num_sem_blocks:
        return []
    family = family_of(cfg)
    stages = prior.windowed_stages
    if sorted(stages) == list(family.windowed_stages):
        return []
    return [
        f"MODEL.SEMASK.WINDOWED_STAGES = {list(stages)!r}: the {family.fork} models (decoder "
        f"{family.transformer_decoder!r}) window stages {list(family.windowed_stages)}; "
        f"start from {family.config}"
    ]


def check_buildable(cfg: CfgNode) -> None:
    """Raise a ValueError naming the config to use if ``cfg`` (say a merged fork YAML) would build
    a head other than the published one of its family."""
    problems = fork_name_problems(cfg) + decoder_problems(cfg)
    if problems:
        raise ValueError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
