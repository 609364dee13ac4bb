"""Registry of transformer decoders (mask predictors) and their build function."""

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry
from torch import nn

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Transformer decoders of mask-classification heads, selected by
``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`` and built as
``(cfg, in_channels, mask_classification)``. Called as ``decoder(x, mask_features, mask=None)``,
they return ``{"pred_logits", "pred_masks", "aux_outputs"}``.
"""


def build_transformer_decoder(
    cfg: CfgNode, in_channels: int, mask_classification: bool = True
) -> nn.Module:
    """Build the decoder named by ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)
