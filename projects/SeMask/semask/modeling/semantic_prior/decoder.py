"""SeMask's parameter-free semantic decoder: the per-stage prior maps summed at stride 4."""

from typing import List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...upsample import bilinear_matrix


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def upsampling_matrix(size: int, steps: int, final: int, dtype: torch.dtype) -> Tensor:
    """[final, size] (CPU): ``steps`` successive x2 bilinear resizes (align_corners=True) of an
    axis of ``size`` samples, then one to ``final`` if that size still differs, as one matrix
    (the product, in float64, of the steps' :func:`semask.upsample.bilinear_matrix`, with the
    weights the CPU kernel computes for ``dtype``)."""
    weights = torch.float64 if dtype == torch.float64 else torch.float32
    matrix = torch.eye(size, dtype=torch.float64)
    for _ in range(steps):
        matrix = bilinear_matrix(size, 2 * size, True, weights).double() @ matrix
        size *= 2
    if size != final:
        matrix = bilinear_matrix(size, final, True, weights).double() @ matrix
    return matrix.to(dtype)


def sum_priors(priors: Sequence[Tensor]) -> Tensor:
    """Sum the semantic prior maps of all stages at the finest one's size (stride 4).

    Args:
        priors: finest first, [B, K, H/4, W/4], [B, K, H/8, W/8], ... The map at position i is
            upsampled by i successive x2 bilinear steps (align_corners=True), then resized
            (bilinear, align_corners=True) to the finest size if it still differs.

    Returns:
        [B, K, H/4, W/4]: the sum. Each coarser map's resizes are one row and one column matrix
        (:func:`upsampling_matrix`): two small products instead of i full-size interpolations
        (the same values up to rounding).
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
    height, width = finest.shape[-2:]
    total = finest
    for index, prior in enumerate(priors[1:], start=1):
        rows = upsampling_matrix(prior.shape[-2], index, height, prior.dtype).to(prior.device)
        columns = upsampling_matrix(prior.shape[-1], index, width, prior.dtype).to(prior.device)
        total = total + rows @ (prior @ columns.t())
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
