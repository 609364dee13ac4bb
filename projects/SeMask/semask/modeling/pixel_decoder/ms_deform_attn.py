"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The official Mask2Former code needs a compiled CUDA op for this. Here all levels are packed into
one zero-separated canvas per (image, head) and sampled with a single ``F.grid_sample`` over all
heads at once (heads folded into the batch), so it runs on any device without a per-level sample,
stack and concatenation.
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def canvas_layout(spatial_shapes: Sequence[Tuple[int, int]]) -> Tuple[List[int], int, int]:
    """Where :func:`pack_levels` puts each level: its first row (levels stacked top to bottom
    with one zero row between neighbours, so that no bilinear sample mixes two levels), and the
    canvas height sum(H_l) + L - 1 and width max(W_l)."""
    rows, row = [], 0
    for height, _ in spatial_shapes:
        rows.append(row)
        row += int(height) + 1
    return rows, row - 1, max(int(w) for _, w in spatial_shapes)


def pack_levels(value: Tensor, spatial_shapes: Sequence[Tuple[int, int]]) -> Tensor:
    """[B, S, M, D] flattened levels -> [B * M, D, H_c, W_c] canvas (:func:`canvas_layout`), zero
    outside the levels; level l fills ``H_l`` rows from its first row and columns 0 to ``W_l``."""
    batch, _, heads, dim = value.shape
    rows, height, width = canvas_layout(spatial_shapes)
    canvas = value.new_zeros(batch, heads, dim, height, width)
    sizes = [int(h) * int(w) for h, w in spatial_shapes]
    for row, (h, w), level in zip(rows, spatial_shapes, value.split(sizes, 1)):
        # one copy per level, from [B, H*W, M, D] straight into its place in the canvas
        level = level.permute(0, 2, 3, 1).unflatten(-1, (int(h), int(w)))
        canvas[:, :, :, row : row + int(h), : int(w)] = level
    return canvas.view(batch * heads, dim, height, width)


def canvas_grid(sampling_locations: Tensor, spatial_shapes: Sequence[Tuple[int, int]]) -> Tensor:
    """[B, Q, M, L, P, 2] (x, y) in [0, 1] per level -> [B * M, L * P, Q, 2] grid_sample
    coordinates (align_corners=False) on the canvas of :func:`pack_levels`.

    Points come before queries so that consecutive samples are neighbouring points of one level
    (cache-friendly reads, and a weighted sum over points that runs along contiguous queries). A
    location more than one pixel outside its level is clamped to one pixel beyond the edge, where
    every bilinear neighbour with a non-zero weight is zero padding: it reads zero, as on the
    level alone, with zero gradient.
    """
    batch, queries, heads, levels, points, _ = sampling_locations.shape
    rows, height, width = canvas_layout(spatial_shapes)
    options = {"dtype": sampling_locations.dtype, "device": sampling_locations.device}
    sizes = torch.tensor([[int(w), int(h)] for h, w in spatial_shapes], **options)
    canvas = torch.tensor([width, height], **options)
    shifts = torch.tensor([[0.0, row] for row in rows], **options)
    # pixel x = u * W_l - 1/2 in [-1, W_l]  <=>  u in [-1/(2 W_l), 1 + 1/(2 W_l)]
    low, high = (-0.5 / sizes)[:, None, None], (1 + 0.5 / sizes)[:, None, None]
    # canvas coordinate (x + 1/2 + shift) * 2 / W_c - 1 = u * scale + bias
    scale, bias = (2 * sizes / canvas)[:, None, None], (2 * shifts / canvas - 1)[:, None, None]
    # [B, Q, M, L, P, 2] -> [B, M, L, P, Q, 2], the one copy of the locations
    locations = sampling_locations.permute(0, 2, 3, 4, 1, 5).contiguous()
    grid = torch.addcmul(bias, torch.clamp(locations, low, high), scale)
    return grid.view(batch * heads, levels * points, queries, 2)


class WeightedSampleSum(torch.autograd.Function):
    """``(samples * weights).sum(2)``: samples [N, D, K, Q], weights [N, 1, K, Q] -> [N, D, Q].

    One multiply-add per sample k over contiguous [N, D, Q] slices, forward and backward: much
    faster than a broadcast product and sum over the short K dimension, and without its
    [N, D, K, Q] temporary or the per-slice copies that autograd through a Python loop makes.
    """

    @staticmethod
    def forward(ctx, samples: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(samples, weights)
        output = samples[:, :, 0] * weights[:, :, 0]
        for k in range(1, samples.shape[2]):
            output.addcmul_(samples[:, :, k], weights[:, :, k])
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        samples, weights = ctx.saved_tensors
        # The gradient arrives transposed ([B, Q, M * D] output); one contiguous copy of it here
        # keeps every product below contiguous, and grid_sample's backward then copies nothing.
        grad_output = grad_output.contiguous()
        grad_samples = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_samples = grad_output[:, :, None] * weights
        if ctx.needs_input_grad[1]:
            grad_weights = torch.stack(
                [(grad_output * samples[:, :, k]).sum(1) for k in range(samples.shape[2])], 1
            )[:, None]
        return grad_samples, grad_weights


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
    # [B*M, D, L*P, Q]
    samples = F.grid_sample(
        pack_levels(value, spatial_shapes),
        canvas_grid(sampling_locations, spatial_shapes),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    # [B, Q, M, L, P] -> [B*M, 1, L*P, Q]
    weights = attention_weights.permute(0, 2, 3, 4, 1).reshape(batch * heads, 1, -1, queries)
    output = WeightedSampleSum.apply(samples, weights)
    return output.view(batch, heads * dim, queries).transpose(1, 2).contiguous()


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
