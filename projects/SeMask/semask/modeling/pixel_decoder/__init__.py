"""Pixel decoders of mask-classification heads; importing this package registers them."""

from .fapn import FeatureAlign, MSDeformAttnPixelFANDecoder, PixelFANDecoder
from .fpn import BasePixelDecoder
from .ms_deform_attn import MSDeformAttn
from .ms_deform_sampling import ms_deform_attn
from .msdeform_decoder import MSDeformAttnPixelDecoder
from .registry import PIXEL_DECODER_REGISTRY, build_pixel_decoder

__all__ = [
    "PIXEL_DECODER_REGISTRY",
    "BasePixelDecoder",
    "FeatureAlign",
    "MSDeformAttn",
    "MSDeformAttnPixelDecoder",
    "MSDeformAttnPixelFANDecoder",
    "PixelFANDecoder",
    "build_pixel_decoder",
    "ms_deform_attn",
]
