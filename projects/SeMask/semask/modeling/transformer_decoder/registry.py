"""Registry of transformer decoders (mask predictors) and their build function."""

from typing import Any, Dict

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry
from torch import nn

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Transformer decoders of mask-classification heads, selected by
``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`` and built as
``(cfg, in_channels, mask_classification)``. Called as ``decoder(x, mask_features)`` (inputs
are zero-padded without a padding mask, as in Mask2Former, so a decoder written for Mask2Former's
``forward(x, mask_features, mask=None)`` works too), they return
``{"pred_logits", "pred_masks", "aux_outputs"}``.
"""


def build_transformer_decoder(
    cfg: CfgNode, in_channels: int, mask_classification: bool = True
) -> nn.Module:
    """Build the decoder named by ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)


def shared_decoder_config(
    cfg: CfgNode, in_channels: int, mask_classification: bool
) -> Dict[str, Any]:
    """Constructor arguments that every transformer decoder reads alike from ``cfg``."""
    mask_former = cfg.MODEL.MASK_FORMER
    return {
        "in_channels": in_channels,
        "mask_classification": mask_classification,
        "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        "hidden_dim": mask_former.HIDDEN_DIM,
        "num_queries": mask_former.NUM_OBJECT_QUERIES,
        "nheads": mask_former.NHEADS,
        "dim_feedforward": mask_former.DIM_FEEDFORWARD,
        "pre_norm": mask_former.PRE_NORM,
        "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
        "enforce_input_project": mask_former.ENFORCE_INPUT_PROJ,
    }
