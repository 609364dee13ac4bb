"""Sine position encoding of a feature map (the DETR / Mask2Former form)."""

import math
from typing import Optional

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Fixed 2-D sine/cosine position encoding.

    Args:
        num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels (y then x).
        temperature: base of the geometric frequency progression.
        normalize: scale the cumulative coordinates to ``[0, scale]``.
        scale: range of the normalised coordinates (default ``2 * pi``).
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000.0,
        normalize: bool = False,
        scale: Optional[float] = None,
    ) -> None:
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, C, H, W] (only its shape and device are used; no position is padding).
        Returns [B, 2 * num_pos_feats, H, W] in float32.

        The y half depends on the row only and the x half on the column only, so each is
        computed once per row / column and broadcast over the other axis."""
        batch, _, height, width = x.shape
        pos_y = self._encode(height, x.device)[:, None, :].expand(height, width, -1)
        pos_x = self._encode(width, x.device)[None, :, :].expand(height, width, -1)
        pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
        return pos[None].expand(batch, -1, -1, -1)

    def _encode(self, length: int, device: torch.device) -> Tensor:
        """[length, num_pos_feats]: the encoding of positions 1..length along one axis."""
        embed = torch.arange(1, length + 1, dtype=torch.float32, device=device)
        if self.normalize:
            eps = 1e-6
            embed = embed / (embed[-1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats
        )
        return _interleave_sin_cos(embed[:, None] / dim_t)


def _interleave_sin_cos(angles: Tensor) -> Tensor:
    """[..., F] angles -> [..., F]: sin of the even entries and cos of the odd ones, interleaved."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
