"""SeMask's parameter-free semantic decoder: the per-stage prior maps summed at stride 4."""

from typing import List, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def sum_priors(priors: Sequence[Tensor]) -> Tensor:
    """Sum the semantic prior maps of all stages at the finest one's size (stride 4).

    Args:
        priors: finest first, [B, K, H/4, W/4], [B, K, H/8, W/8], ... The map at position i is
            upsampled by i successive x2 bilinear steps (align_corners=True), then resized
            (bilinear, align_corners=True) to the finest size if it still differs.

    Returns:
        [B, K, H/4, W/4]: the sum.
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
    return total


def aggregate_priors(priors: Sequence[Tensor]) -> Tensor:
    """The semantic decoder: :func:`sum_priors` resized 4x bilinearly with align_corners=True,
    [B, K, H, W]."""
    total = sum_priors(priors)
    return _resize(total, [4 * total.shape[-2], 4 * total.shape[-1]])


def _named_priors(features: Mapping[str, Tensor], prior_names: Sequence[str]) -> List[Tensor]:
    missing = [name for name in prior_names if name not in features]
    if missing:
        raise KeyError(
            f"prior maps {missing} missing from the backbone features {sorted(features)}"
        )
    return [features[name] for name in prior_names]


def prior_sum(features: Mapping[str, Tensor], prior_names: Sequence[str]) -> Tensor:
    """:func:`sum_priors` of the priors ``prior_names`` (finest first) of ``features``:
    [B, K, h, w] (h, w: the finest prior's size); a KeyError names missing priors."""
    return sum_priors(_named_priors(features, prior_names))


def semantic_map(features: Mapping[str, Tensor], prior_names: Sequence[str]) -> Tensor:
    """:func:`aggregate_priors` of the priors ``prior_names`` (finest first) of ``features``:
    [B, K, 4h, 4w]; a KeyError names missing priors."""
    return aggregate_priors(_named_priors(features, prior_names))
