"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The official Mask2Former code needs a compiled CUDA op for this; here each level is sampled with
``F.grid_sample`` over all heads at once (heads folded into the batch), so it runs on any device.
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Attention-weighted sum of bilinear samples taken at deformable locations on every level.

    Args:
        value: [B, S, M, D], the flattened levels one after the other (S = sum of H_l * W_l),
            M heads of D channels.
        spatial_shapes: (H_l, W_l) of each of the L levels, in the order they appear in ``value``.
        sampling_locations: [B, Q, M, L, P, 2], (x, y) in [0, 1] relative to each level's extent;
            outside points read zeros.
        attention_weights: [B, Q, M, L, P], already normalised over L x P.

    Returns:
        [B, Q, M * D].
    """
    batch, num_values, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes]
    if len(sizes) != levels or sum(sizes) != num_values:
        raise ValueError(
            f"ms_deform_attn: spatial_shapes {list(spatial_shapes)} give {sum(sizes)} values in "
            f"{len(sizes)} levels, but value has {num_values} values and sampling_locations "
            f"{levels} levels"
        )
    if batch == 0 or queries == 0:
        return value.new_zeros((batch, queries, heads * dim))
    grids = 2 * sampling_locations - 1
    samples: List[Tensor] = []
    for level, ((height, width), level_value) in enumerate(
        zip(spatial_shapes, value.split(sizes, 1))
    ):
        # [B, H*W, M, D] -> [B*M, D, H, W]
        level_value = level_value.permute(0, 2, 3, 1).reshape(batch * heads, dim, height, width)
        # [B, Q, M, P, 2] -> [B*M, Q, P, 2]
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        samples.append(
            F.grid_sample(
                level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )
    # [B*M, D, Q, L*P] x [B*M, 1, Q, L*P]
    stacked = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    output = (stacked * weights).sum(-1).view(batch, heads * dim, queries)
    return output.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module with the official parameter names.

    Args:
        d_model: channels of queries and values.
        n_levels: feature levels attended.
        n_heads: attention heads (``d_model`` must be divisible by it).
        n_points: sampling points per head and level.
    """

    def __init__(
        self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"MSDeformAttn: d_model {d_model} is not divisible by n_heads {n_heads}"
            )
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero offset weights with a bias that starts each head on a ray of its own direction,
        point p at distance p + 1; uniform attention; Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        distances = torch.arange(1, self.n_points + 1, dtype=torch.float32)
        grid = directions[:, None, None, :] * distances[None, None, :, None]
        grid = grid.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Attend from each query around its reference point on every level.

        Args:
            query: [B, Q, d_model].
            reference_points: [B, Q, L, 2], (x, y) in [0, 1] per level.
            input_flatten: [B, S, d_model], the levels flattened and concatenated.
            spatial_shapes: (H_l, W_l) per level.
            padding_mask: optional [B, S] bool, True where ``input_flatten`` is padding.

        Returns:
            [B, Q, d_model], computed in float32 even under autocast.
        """
        if reference_points.shape[-1] != 2:
            raise ValueError(
                "MSDeformAttn: reference_points must end in (x, y), got shape "
                f"{tuple(reference_points.shape)}"
            )
        if len(spatial_shapes) != self.n_levels:
            raise ValueError(
                f"MSDeformAttn: built for {self.n_levels} levels, got {len(spatial_shapes)}"
            )
        with torch.autocast(device_type=query.device.type, enabled=False):
            query, reference_points = query.float(), reference_points.float()
            batch, queries, _ = query.shape
            value = self.value_proj(input_flatten.float())
            if padding_mask is not None:
                value = value.masked_fill(padding_mask[..., None], 0.0)
            value = value.view(
                batch, input_flatten.shape[1], self.n_heads, self.d_model // self.n_heads
            )
            offsets = self.sampling_offsets(query).view(
                batch, queries, self.n_heads, self.n_levels, self.n_points, 2
            )
            weights = self.attention_weights(query).view(
                batch, queries, self.n_heads, self.n_levels * self.n_points
            )
            weights = weights.softmax(-1).view(
                batch, queries, self.n_heads, self.n_levels, self.n_points
            )
            # offsets are in pixels of each level: divide by (W_l, H_l)
            normalizer = torch.tensor(
                [[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device
            )
            locations = (
                reference_points[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
            output = ms_deform_attn(value, spatial_shapes, locations, weights)
            return self.output_proj(output)
