"""Deformable transformer encoder over several feature levels (the MSDeformAttn pixel decoder's)."""

import copy
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..onednn_linear import linear_activation
from .ms_deform_attn import MSDeformAttn


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention, then a ReLU feed-forward block."""

    def __init__(
        self,
        *,
        d_model: int,
        dim_feedforward: int,
        dropout: float,
        n_levels: int,
        n_heads: int,
        n_points: int,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
    ) -> Tensor:
        """``src``, ``pos`` [B, S, C]; ``reference_points`` [B, S, L, 2]. Returns [B, S, C]."""
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes)
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout2(linear_activation(self.linear1, src, "relu")))
        return self.norm2(src + self.dropout3(hidden))


class MSDeformAttnEncoder(nn.Module):
    """A stack of :class:`MSDeformAttnEncoderLayer` (stored as ``layers``)."""

    def __init__(self, layer: MSDeformAttnEncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    @staticmethod
    def reference_points(
        spatial_shapes: Sequence[Tuple[int, int]], batch: int, device: torch.device
    ) -> Tensor:
        """Pixel centres of every level, normalised to [0, 1]: [B, S, L, 2] as (x, y)."""
        centres = []
        for height, width in spatial_shapes:
            ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
            xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            centres.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
        points = torch.cat(centres, 0)
        return points[None, :, None, :].expand(batch, -1, len(spatial_shapes), -1)

    def forward(
        self, src: Tensor, pos: Tensor, spatial_shapes: Sequence[Tuple[int, int]]
    ) -> Tensor:
        """``src``, ``pos`` [B, S, C] -> [B, S, C]."""
        reference_points = self.reference_points(spatial_shapes, src.shape[0], src.device)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Flattens several levels, adds position + level embeddings and runs the encoder.

    Args:
        d_model: channels.
        nhead: attention heads.
        num_encoder_layers: encoder depth.
        dim_feedforward: feed-forward width.
        dropout: dropout rate.
        num_feature_levels: number of input levels.
        enc_n_points: sampling points per head and level.
    """

    def __init__(
        self,
        *,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        num_feature_levels: int = 3,
        enc_n_points: int = 4,
    ) -> None:
        super().__init__()
        layer = MSDeformAttnEncoderLayer(
            d_model=d_model,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            n_levels=num_feature_levels,
            n_heads=nhead,
            n_points=enc_n_points,
        )
        self.encoder = MSDeformAttnEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier matrices, MSDeformAttn's own initialisation, normal level embeddings."""
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(
        self, srcs: Sequence[Tensor], pos_embeds: Sequence[Tensor]
    ) -> Tuple[List[Tensor], List[Tuple[int, int]]]:
        """``srcs``, ``pos_embeds``: per level [B, C, H_l, W_l]. Returns the encoded levels in the
        same shapes and their (H_l, W_l)."""
        spatial_shapes = [(int(src.shape[2]), int(src.shape[3])) for src in srcs]
        flat_src = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)
        flat_pos = torch.cat(
            [
                pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1)
                for level, pos in enumerate(pos_embeds)
            ],
            1,
        )
        memory = self.encoder(flat_src, flat_pos, spatial_shapes)
        batch, _, channels = memory.shape
        sizes = [h * w for h, w in spatial_shapes]
        return [
            level.transpose(1, 2).reshape(batch, channels, h, w)
            for level, (h, w) in zip(memory.split(sizes, 1), spatial_shapes)
        ], spatial_shapes
