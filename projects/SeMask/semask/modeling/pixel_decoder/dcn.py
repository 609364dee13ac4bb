"""Modulated deformable convolution (DCNv2) on ``torchvision.ops.deform_conv2d`` (CPU
inference: :mod:`.dcn_sampling`).

Parameter names and the offset/mask layout follow the DCNv2 module of the official FaPN code, so
its checkpoints load unchanged: ``weight``, ``bias`` and ``conv_offset_mask``, a convolution whose
3 * G * k * k output channels split into thirds (o1, o2, m); the offsets are ``cat(o1, o2)``, laid
out per deformable group and per kernel point as (dy, dx) pairs (torchvision's layout), and the
modulation mask is ``sigmoid(m)``.
"""

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from .dcn_sampling import deform_conv2d_by_sampling, samples_on_cpu


class ModulatedDeformConv(nn.Module):
    """DCNv2 whose offsets and masks are predicted from a separate guide map.

    Args:
        in_channels: channels of the sampled input.
        out_channels: output channels.
        kernel_size, stride, padding, dilation: as for ``nn.Conv2d``.
        deformable_groups: channel groups with their own offsets and masks.
        offset_in_channels: channels of the guide map (default ``in_channels``).
        bias: add a learned bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        deformable_groups: int = 1,
        offset_in_channels: Optional[int] = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % deformable_groups != 0:
            raise ValueError(
                f"ModulatedDeformConv: in_channels {in_channels} is not divisible by "
                f"deformable_groups {deformable_groups}"
            )
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        points = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(
            in_channels if offset_in_channels is None else offset_in_channels,
            3 * deformable_groups * points,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform weights of bound 1/sqrt(fan_in), zero bias; zero offsets and masks 0.5."""
        bound = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def offsets_and_mask(self, guide: Tensor) -> Tuple[Tensor, Tensor]:
        """``guide`` [B, C_g, H, W] -> offsets [B, 2 * G * k * k, H', W'] (dy, dx pairs) and
        mask [B, G * k * k, H', W'] in (0, 1)."""
        first, second, mask = torch.chunk(self.conv_offset_mask(guide), 3, dim=1)
        return torch.cat((first, second), dim=1), torch.sigmoid(mask)

    def forward(self, x: Tensor, guide: Tensor) -> Tensor:
        """``x`` [B, C_in, H, W] sampled at offsets predicted from ``guide`` -> [B, C_out, H', W'],
        computed in float32 even under autocast; CPU inference by
        :func:`.dcn_sampling.deform_conv2d_by_sampling` (the same values, faster)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            offset, mask = self.offsets_and_mask(guide.float())
            x = x.float()
            conv = (
                deform_conv2d_by_sampling
                if samples_on_cpu(x, offset, mask, self.weight, self.bias)
                else deform_conv2d
            )
            return conv(
                x,
                offset,
                self.weight,
                self.bias,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                mask=mask,
            )
