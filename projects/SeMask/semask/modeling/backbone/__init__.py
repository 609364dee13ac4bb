"""SeMask backbones; importing this module registers them in detectron2's BACKBONE_REGISTRY."""

from .common import set_sdpa
from .mit import MIT_SIZES, D2SeMaskMiT
from .semantic_layer import SemanticAttention, SemanticLayer
from .swin import SWIN_SIZES, D2SeMaskSwinTransformer, D2SwinTransformer

__all__ = [
    "D2SeMaskMiT",
    "D2SeMaskSwinTransformer",
    "D2SwinTransformer",
    "MIT_SIZES",
    "SWIN_SIZES",
    "SemanticAttention",
    "SemanticLayer",
    "set_sdpa",
]
