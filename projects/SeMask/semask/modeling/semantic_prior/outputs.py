"""The prior outputs at inference: ``sem_prior`` and ``stage_priors`` of each image.

Every meta-architecture adds them to its per-image result with :func:`prior_outputs` (when
``MODEL.SEMASK.RETURN_PRIOR``); the predictor reads them back with :func:`read_prior_outputs`.
"""

import math
from typing import Any, Dict, Mapping, Tuple

import torch
from detectron2.layers import ShapeSpec

from ...upsample import postprocess_to_output
from .naming import STAGE_NAMES, prior_name, split_features


def prior_outputs(
    sem_prior: torch.Tensor,
    features: Mapping[str, torch.Tensor],
    shapes: Mapping[str, ShapeSpec],
    index: int,
    image_size: Tuple[int, int],
    height: int,
    width: int,
) -> Dict[str, Any]:
    """The prior outputs of batch element ``index``.

    Args:
        sem_prior: [K, Hp, Wp] aggregated prior of this image at the padded input size.
        features: backbone outputs; its ``prior_res{i}`` entries are [B, K, Hp/s, Wp/s].
        shapes: the backbone's ``output_shape()`` (gives each stride s).
        image_size: the image's size inside the padded batch.
    Returns:
        ``sem_prior`` [K, height, width] and ``stage_priors`` (``res{i}`` -> [K, ceil(h/s),
        ceil(w/s)], the part of each raw stage map that covers the image).
    """
    h, w = image_size
    stages = {}
    for stage, prior in split_features(features)[1].items():
        stride = shapes[prior_name(stage)].stride
        stages[stage] = prior[index, :, : math.ceil(h / stride), : math.ceil(w / stride)]
    return {
        "sem_prior": postprocess_to_output(sem_prior, image_size, height, width),
        "stage_priors": stages,
    }


def read_prior_outputs(
    output: Mapping[str, Any], model_name: str
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """``sem_prior`` [K, H, W] and ``stage_priors`` (``res2``..``res5`` in stage order) of one
    model output, detached float32 on the CPU; a KeyError names ``model_name`` if absent."""
    if "sem_prior" not in output or "stage_priors" not in output:
        raise KeyError(
            f"{model_name} returned no 'sem_prior'/'stage_priors' although "
            "MODEL.SEMASK.RETURN_PRIOR is True; priors need a SeMask backbone with semantic layers "
            "(NUM_SEM_BLOCKS > 0)"
        )
    stage_priors = output["stage_priors"]
    return output["sem_prior"].detach().float().cpu(), {
        stage: stage_priors[stage].detach().float().cpu()
        for stage in STAGE_NAMES
        if stage in stage_priors
    }
