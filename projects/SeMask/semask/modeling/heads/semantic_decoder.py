"""SeMask's parameter-free semantic decoder: the per-stage prior maps summed at stride 4."""

from typing import List, Mapping, Sequence

import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from torch import Tensor

from ..backbone.common import PRIOR_PREFIX


def prior_feature_names(input_shape: Mapping[str, ShapeSpec]) -> List[str]:
    """The backbone outputs that are prior maps (``prior_res*``), finest first."""
    priors = [name for name in input_shape if name.startswith(PRIOR_PREFIX)]
    return sorted(priors, key=lambda name: input_shape[name].stride)


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def aggregate_priors(priors: Sequence[Tensor]) -> Tensor:
    """Sum the semantic prior maps of all stages and upsample the sum 4x.

    Args:
        priors: finest first, [B, K, H/4, W/4], [B, K, H/8, W/8], ... The map at position i is
            upsampled by i successive x2 bilinear steps (align_corners=True), then resized
            (bilinear, align_corners=True) to the finest size if it still differs.

    Returns:
        [B, K, 4 * H/4, 4 * W/4]: the sum, resized bilinearly with align_corners=True.
    """
    if len(priors) == 0:
        raise ValueError("aggregate_priors: no prior maps given")
    finest = priors[0]
    for index, prior in enumerate(priors):
        if prior.dim() != 4 or prior.shape[:2] != finest.shape[:2]:
            raise ValueError(
                f"aggregate_priors: prior {index} has shape {tuple(prior.shape)}; every prior must "
                f"be [B, K, h, w] with (B, K) = {tuple(finest.shape[:2])}"
            )
    total = finest
    for index, prior in enumerate(priors[1:], start=1):
        for _ in range(index):
            prior = F.interpolate(prior, scale_factor=2, mode="bilinear", align_corners=True)
        if prior.shape[-2:] != finest.shape[-2:]:
            prior = _resize(prior, finest.shape[-2:])
        total = total + prior
    return _resize(total, [4 * finest.shape[-2], 4 * finest.shape[-1]])
