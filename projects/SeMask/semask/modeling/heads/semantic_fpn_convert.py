"""Pure remapping of the published SeMask-FPN (mmseg) checkpoints to :class:`SeMaskFPN` names.

mmseg names the Semantic-FPN head ``decode_head.scale_heads.{i}.{j}.conv|bn.*`` and
``decode_head.conv_seg.*``; this project (detectron2's ``SemSegFPNHead``) names them
``sem_seg_head.res{i+2}.{j}[.norm].*`` and ``sem_seg_head.predictor.*``. Backbone names are equal.
"""

import logging
import re
from typing import Dict, List, Mapping, Optional

import torch
from torch import nn

from ..backbone.convert import unwrap_checkpoint

StateDict = Dict[str, torch.Tensor]
logger = logging.getLogger(__name__)

_SCALE_HEAD = re.compile(r"^decode_head\.scale_heads\.(\d+)\.(\d+)\.(conv|bn)\.(\w+)$")
_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_CLASSIFIER = re.compile(r"^decode_head\.conv_seg\.(weight|bias)$")


def is_mmseg_semask_fpn(checkpoint: Mapping) -> bool:
    """Whether ``checkpoint`` (a state_dict or an mmcv ``{"meta", "state_dict", ...}`` wrapper)
    has the key layout of a SeMask-FPN mmseg model."""
    state = checkpoint.get("state_dict", checkpoint)
    return (
        isinstance(state, Mapping)
        and "decode_head.conv_seg.weight" in state
        and any(isinstance(k, str) and k.startswith("backbone.") for k in state)
    )


def semask_fpn_windowed_stages(embed_dim: int, num_classes: int) -> List[int]:
    """Stages whose semantic layer the SeMask-FPN code runs in windows: with EMBED_DIM 96 or 192
    (Swin T/S/L) and more than 19 classes, 0-1; otherwise (Swin-B, 19 classes) all four."""
    if embed_dim in (96, 192) and num_classes > 19:
        return [0, 1]
    return [0, 1, 2, 3]


def _head_name(name: str) -> Optional[str]:
    """Our name of one mmseg decode-head entry, or None if it is no SeMask-FPN head entry."""
    match = _SCALE_HEAD.match(name)
    if match:
        stage, index, module, entry = match.groups()
        if module == "conv" and entry in ("weight", "bias"):
            return f"sem_seg_head.res{int(stage) + 2}.{index}.{entry}"
        if module == "bn" and entry in _BN_ENTRIES:
            return f"sem_seg_head.res{int(stage) + 2}.{index}.norm.{entry}"
        return None
    match = _CLASSIFIER.match(name)
    return f"sem_seg_head.predictor.{match.group(1)}" if match else None


def _check_against(state: StateDict, model: nn.Module) -> None:
    """Raise ValueError listing model entries the checkpoint lacks, extra entries and shape
    mismatches; warn if the model's semantic-layer windowing is not the checkpoint's published
    one (its function then differs from the published model's)."""
    own = model.state_dict()
    problems = [
        f"{k}: checkpoint {list(v.shape)} vs model {list(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    problems += [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    if problems:
        raise ValueError(
            f"SeMask-FPN checkpoint does not fit the model ({len(problems)} problems): "
            + "; ".join(problems[:8])
            + ("; ..." if len(problems) > 8 else "")
        )
    windowed = getattr(getattr(model, "backbone", None), "windowed_stages", None)
    embed = state.get("backbone.patch_embed.proj.weight")
    if windowed is None or embed is None:
        return
    num_classes = state["sem_seg_head.predictor.weight"].shape[0]
    published = semask_fpn_windowed_stages(embed.shape[0], num_classes)
    if sorted(windowed) != published:
        logger.warning(
            f"SeMask-FPN checkpoint (EMBED_DIM {embed.shape[0]}, {num_classes} classes) was "
            f"trained with MODEL.SEMASK.WINDOWED_STAGES {published}, the model has "
            f"{sorted(windowed)}: it computes another function than the published model"
        )


def convert_semask_fpn_mmseg(checkpoint: Mapping, model: Optional[nn.Module] = None) -> StateDict:
    """SeMask-FPN mmseg checkpoint -> ``{name: Tensor}`` in :class:`SeMaskFPN` names.

    ``backbone.*`` entries keep their names; the decode head (convolutions, BatchNorm weights
    and buffers, classifier) is renamed. Any other entry is an error (a KeyError listing them).
    With ``model``, the result must fit its ``state_dict()`` exactly (names and shapes; else a
    ValueError listing the problems); a windowing other than the checkpoint's published rule
    (:func:`semask_fpn_windowed_stages`) is logged as a warning.
    """
    state = unwrap_checkpoint(checkpoint)
    out: StateDict = {}
    unmapped: List[str] = []
    for name, value in state.items():
        target = name if name.startswith("backbone.") else _head_name(name)
        if target is None:
            unmapped.append(name)
        else:
            out[target] = value
    if unmapped:
        raise KeyError(f"SeMask-FPN mmseg checkpoint entries with no SeMaskFPN name: {unmapped}")
    if model is not None:
        _check_against(out, model)
    return out
