"""Transformer decoders of mask-classification heads; importing this package registers them."""

from .mask2former_decoder import MultiScaleMaskedTransformerDecoder
from .maskformer_decoder import StandardTransformerDecoder
from .position_encoding import PositionEmbeddingSine
from .registry import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder

__all__ = [
    "TRANSFORMER_DECODER_REGISTRY",
    "MultiScaleMaskedTransformerDecoder",
    "PositionEmbeddingSine",
    "StandardTransformerDecoder",
    "build_transformer_decoder",
]
