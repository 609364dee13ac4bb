"""Helpers shared by the SeMask backbones: output declaration, input checks, attention switch."""

from typing import Dict, Optional, Sequence

import torch
from detectron2.modeling import ShapeSpec
from torch import nn

STAGE_NAMES = ("res2", "res3", "res4", "res5")


def check_backbone_input(x: torch.Tensor, in_chans: int, min_size: int) -> None:
    """Raise a ValueError unless ``x`` is [B, in_chans, H, W] with B >= 1 and H, W >= min_size."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f"backbone input must be [B, {in_chans}, H, W], got {list(x.shape)}")
    if x.shape[0] == 0 or min(x.shape[2:]) < min_size:
        raise ValueError(
            f"backbone input {list(x.shape)} is too small: batch must be >= 1 and H, W >= "
            f"{min_size} (one patch)"
        )


def declare_outputs(
    out_features: Sequence[str], channels: Sequence[int], num_classes: Optional[int]
) -> Dict[str, ShapeSpec]:
    """ShapeSpecs of res2..res5 (restricted to ``out_features``) and, with priors, prior_res*."""
    unknown = set(out_features) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"OUT_FEATURES {sorted(unknown)} not among {list(STAGE_NAMES)}")
    shapes = {}
    for i, name in enumerate(STAGE_NAMES):
        if name in out_features:
            shapes[name] = ShapeSpec(channels=channels[i], stride=4 * 2**i)
    if num_classes is not None:
        for i, name in enumerate(STAGE_NAMES):
            shapes[f"prior_{name}"] = ShapeSpec(channels=num_classes, stride=4 * 2**i)
    return shapes


def set_sdpa(model: nn.Module, enabled: bool) -> None:
    """Route every attention of ``model`` through SDPA (True) or plain matmul-softmax (False)."""
    for module in model.modules():
        if hasattr(module, "use_sdpa"):
            module.use_sdpa = enabled
