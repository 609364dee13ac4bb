"""The multi-scale deformable attention module (Deformable DETR) around the pure-PyTorch
sampling core of :mod:`.ms_deform_sampling`: sampling offsets, attention weights, value and output
projections, with the official parameter names."""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..eager import records_grad
from .ms_deform_sampling import ms_deform_attn


def short_softmax(logits: Tensor) -> Tensor:
    """Softmax over the last dimension. Rows as short as a head's L * P = 12 points leave the
    CPU's softmax kernel mostly idle: without autograd, the same values come from max, exp and
    sum at about half its time."""
    if logits.device.type != "cpu" or records_grad(logits):
        return logits.softmax(-1)
    exp = (logits - logits.amax(-1, keepdim=True)).exp_()
    return exp.div_(exp.sum(-1, keepdim=True))


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
            [B, Q, d_model]. Under autocast ``value_proj`` and ``output_proj`` run in its dtype;
            sampling offsets, attention weights and the sampling itself stay float32, so that
            sampling locations keep their precision.
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
        batch, queries, _ = query.shape
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        with torch.autocast(device_type=query.device.type, enabled=False):
            value = value.float().view(
                batch, input_flatten.shape[1], self.n_heads, self.d_model // self.n_heads
            )
            query, reference_points = query.float(), reference_points.float()
            offsets = self.sampling_offsets(query).view(
                batch, queries, self.n_heads, self.n_levels, self.n_points, 2
            )
            weights = self.attention_weights(query).view(
                batch, queries, self.n_heads, self.n_levels * self.n_points
            )
            weights = short_softmax(weights).view(
                batch, queries, self.n_heads, self.n_levels, self.n_points
            )
            # offsets are in pixels of each level: divide by (W_l, H_l). Both terms are given
            # per (level, point, x/y) so that the arithmetic broadcasts over whole rows.
            normalizer = torch.tensor(
                [[[w, h]] * self.n_points for h, w in spatial_shapes],
                dtype=query.dtype,
                device=query.device,
            )  # [L, P, 2]
            reference = reference_points[:, :, :, None].expand(-1, -1, -1, self.n_points, -1)
            locations = reference.contiguous()[:, :, None] + offsets / normalizer
            output = ms_deform_attn(value, spatial_shapes, locations, weights)
        return self.output_proj(output)
