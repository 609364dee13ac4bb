"""Feature-aligned FPN (FaPN): the feature-alignment module and the two decoders that use it."""

from typing import Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import Tensor, nn

from .dcn import ModulatedDeformConv
from .fpn import BasePixelDecoder
from .msdeform_decoder import MSDeformAttnPixelDecoder
from .registry import PIXEL_DECODER_REGISTRY


class FeatureAlign(nn.Module):
    """Aligns an upsampled coarse map to a fine one with a modulated deformable convolution.

    ``offset`` (1x1 conv + ``norm``) reads [fine, 2 x coarse]; ``dcpack_L2`` samples the coarse
    map at the offsets (and masks) predicted from it; the result, after ReLU, is added to the fine
    map.

    Args:
        channels: channels of both maps.
        norm: the normalisation module of ``offset`` (the FaPN decoders pass the GroupNorm of
            their output conv, so that one module is shared, as in the published checkpoints).
        deformable_groups: deformable groups of ``dcpack_L2``.
    """

    def __init__(
        self, channels: int, *, norm: Optional[nn.Module] = None, deformable_groups: int = 8
    ) -> None:
        super().__init__()
        self.offset = Conv2d(2 * channels, channels, kernel_size=1, bias=False, norm=norm)
        weight_init.c2_xavier_fill(self.offset)
        self.dcpack_L2 = ModulatedDeformConv(
            channels, channels, 3, padding=1, deformable_groups=deformable_groups
        )

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        """``fine`` [B, C, H, W], ``coarse`` [B, C, h, w] -> [B, C, H, W]."""
        if coarse.shape[-2:] != fine.shape[-2:]:
            coarse = F.interpolate(
                coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False
            )
        guide = self.offset(torch.cat([fine, coarse * 2], dim=1))
        return F.relu(self.dcpack_L2(coarse, guide)) + fine


class FeatureAlignFusion:
    """Mixin for the FPN-style decoders: FPN step ``k`` first fuses as its base decoder does
    (lateral + upsampled coarse map), then aligns that sum to the lateral map with ``align_k``, a
    :class:`FeatureAlign` that shares ``layer_k``'s norm."""

    def build_fusion(self, index: int, conv_dim: int) -> None:
        norm = getattr(self, f"layer_{index}").norm
        self.add_module(f"align_{index}", FeatureAlign(conv_dim, norm=norm))

    def fuse(self, index: int, lateral: Tensor, coarse: Tensor) -> Tensor:
        return getattr(self, f"align_{index}")(lateral, super().fuse(index, lateral, coarse))


@PIXEL_DECODER_REGISTRY.register()
class PixelFANDecoder(FeatureAlignFusion, BasePixelDecoder):
    """FaPN: :class:`BasePixelDecoder` with feature alignment at every lateral step."""


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelFANDecoder(FeatureAlignFusion, MSDeformAttnPixelDecoder):
    """MSFaPN: :class:`MSDeformAttnPixelDecoder` with feature alignment in its FPN steps."""
