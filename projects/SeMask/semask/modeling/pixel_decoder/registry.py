"""Registry of pixel decoders and their build function."""

from typing import Dict, Sequence

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import Tensor, nn

# Multi-scale maps a pixel decoder hands to the transformer decoder.
NUM_DECODER_LEVELS = 3

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Pixel decoders of mask-classification heads, selected by ``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``.
A pixel decoder is built as ``(cfg, input_shape)`` and has ``forward_features(features)`` returning
``(mask_features [B, MASK_DIM, H/4, W/4], transformer_encoder_features or None,
multi_scale_features: list of 3 maps, coarsest first)``.
"""


def build_pixel_decoder(cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build the pixel decoder named by ``cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``."""
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    model = PIXEL_DECODER_REGISTRY.get(name)(cfg, input_shape)
    if not callable(getattr(model, "forward_features", None)):
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME={name!r}: the pixel decoder has no "
            "forward_features method, which mask-classification heads call"
        )
    return model


def check_feature_sizes(features: Dict[str, Tensor], names: Sequence[str], decoder: str) -> None:
    """Raise a clear error if a feature a decoder reads is missing or has no pixels (an input
    image smaller than the coarsest stride)."""
    for name in names:
        if name not in features:
            raise KeyError(f"{decoder}: feature {name!r} missing; got {sorted(features)}")
        if features[name].dim() != 4 or 0 in features[name].shape[2:]:
            raise ValueError(
                f"{decoder}: feature {name!r} has shape {tuple(features[name].shape)}; it needs "
                "[B, C, H, W] with H, W >= 1 (is the input smaller than the coarsest stride?)"
            )
