"""The sampling core of multi-scale deformable attention (Deformable DETR), in pure PyTorch.

The official Mask2Former code needs a compiled CUDA op for this. Here each level gets a one-pixel
zero border and all levels become one table of value rows, one row per (image, position, head).
Every sampling point turns into its four bilinear neighbours in that table: four row numbers and
four weights (attention weight x bilinear weight). The output of one (image, query, head) is then
one weighted sum of table rows, which ``F.embedding_bag`` computes in the output's own [B, Q, M*D]
layout, on any device, without a per-level sample, a transpose or a [.., points, queries]
temporary.
"""

import warnings
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..eager import records_grad


def padded_levels(value: Tensor, spatial_shapes: Sequence[Tuple[int, int]]) -> Tensor:
    """[B, S, M, D] flattened levels -> [B, S', M, D]: each level [H_l, W_l] stored as
    [H_l + 2, W_l + 2] with a zero border, the levels one after the other (S' their total)."""
    batch, _, heads, dim = value.shape
    padded = [(int(h) + 2) * (int(w) + 2) for h, w in spatial_shapes]
    table = value.new_zeros(batch, sum(padded), heads, dim)
    levels = value.split([int(h) * int(w) for h, w in spatial_shapes], 1)
    start = 0
    for (h, w), level, rows in zip(spatial_shapes, levels, padded):
        place = table[:, start : start + rows].view(batch, int(h) + 2, int(w) + 2, heads, dim)
        place[:, 1:-1, 1:-1] = level.view(batch, int(h), int(w), heads, dim)
        start += rows
    return table


def _tap_layout(
    spatial_shapes: Sequence[Tuple[int, int]],
    batch: int,
    heads: int,
    points: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Where the taps of each level lie in the :func:`padded_levels` table, viewed as
    [B * S' * M, D] rows, for the L * P points of a head: ``size`` [L * P, 2], (W_l, H_l) of each
    point's level; ``origin`` [B, 1, M, L * P], the row of its level's pixel (0, 0) for each image
    and head; ``steps`` [4, L * P], the row steps from its upper-left neighbour to all four.

    Every constant varies along the last dimensions only, so that the elementwise work on
    [B, Q, M, L * P] tensors broadcasts over whole contiguous rows."""
    rows_per_image = sum((int(h) + 2) * (int(w) + 2) for h, w in spatial_shapes)
    index_type = torch.int32 if batch * rows_per_image * heads < 2**31 else torch.int64
    integers = {"dtype": index_type, "device": device}
    firsts, first = [], 0
    for h, w in spatial_shapes:
        firsts.append(first + int(w) + 3)  # pixel (0, 0) sits one row and one column in
        first += (int(h) + 2) * (int(w) + 2)
    size = torch.tensor([[int(w), int(h)] for h, w in spatial_shapes], dtype=dtype, device=device)
    image = torch.arange(batch, **integers).view(batch, 1, 1, 1) * rows_per_image
    level = torch.tensor(firsts, **integers).repeat_interleave(points)
    head = torch.arange(heads, **integers).view(1, 1, heads, 1)
    line = torch.tensor([(int(w) + 2) * heads for _, w in spatial_shapes], **integers)
    line = line.repeat_interleave(points)  # one pixel down: a padded row of every head
    steps = torch.stack([line * 0, line * 0 + heads, line, line + heads])
    return size.repeat_interleave(points, 0), (image + level) * heads + head, steps


def _pixels(locations: Tensor, size: Tensor) -> Tensor:
    """Locations [B, Q, M, L * P, 2] in [0, 1] -> pixel-centre coordinates of their levels."""
    return torch.addcmul(size.new_tensor(-0.5), locations, size)


def _taps(
    pixel: Tensor, attention: Tensor, size: Tensor, origin: Tensor, steps: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`bilinear_taps` from :func:`_pixels` [B, Q, M, L * P, 2] (overwritten) and attention
    [B, Q, M, L * P], without autograd: index and weights [B, Q, M, 4, L * P] (neighbours upper
    left, upper right, lower left, lower right) and the fractions (fx, fy) [B, Q, M, L * P, 2]
    of each point past its upper-left neighbour."""
    heads = attention.shape[2]
    pixel = torch.minimum(pixel.clamp_min_(-1.0), size, out=pixel)
    # upper-left neighbour: at most W_l - 1, so that pixel W_l is its right neighbour
    corner = torch.minimum(pixel.floor(), size - 1)
    fraction = pixel.sub_(corner)
    corner = corner.to(steps.dtype)
    upper_left = corner[..., 1] * steps[2]
    upper_left += origin
    upper_left.add_(corner[..., 0], alpha=heads)  # one pixel right: M rows further
    index = upper_left[..., None, :] + steps
    fx, fy = fraction[..., 0], fraction[..., 1]
    lower = attention * fy
    upper = attention - lower
    weights = attention.new_empty(index.shape)
    torch.mul(upper, fx, out=weights[..., 1, :])
    torch.sub(upper, weights[..., 1, :], out=weights[..., 0, :])
    torch.mul(lower, fx, out=weights[..., 3, :])
    torch.sub(lower, weights[..., 3, :], out=weights[..., 2, :])
    return index, weights, fraction


class _BilinearTaps(torch.autograd.Function):
    """:func:`_taps` with its backward written out. A point's four weights are
    a (1 - fy)(1 - fx), a (1 - fy) fx, a fy (1 - fx), a fy fx, so the gradients of a, fx and fy
    are linear interpolations of the four weight gradients, and a location's gradient is its
    fraction's times the level size inside the clamp range, zero outside it."""

    @staticmethod
    def forward(ctx, locations, attention, size, origin, steps):
        pixel = _pixels(locations, size)
        inside = (pixel >= -1.0).logical_and_(pixel <= size)
        index, weights, fraction = _taps(pixel, attention, size, origin, steps)
        ctx.save_for_backward(attention, fraction, inside.to(pixel.dtype).mul_(size))
        ctx.mark_non_differentiable(index)
        return index, weights

    @staticmethod
    def backward(ctx, _, grad_weights):
        attention, fraction, location_scale = ctx.saved_tensors
        fx, fy = fraction[..., 0], fraction[..., 1]
        upper_left, upper_right, lower_left, lower_right = grad_weights.unbind(-2)
        upper = torch.lerp(upper_left, upper_right, fx)
        lower = torch.lerp(lower_left, lower_right, fx)
        grad_attention = torch.lerp(upper, lower, fy)
        grad_y = (lower - upper).mul_(attention)
        grad_x = torch.lerp(upper_right - upper_left, lower_right - lower_left, fy).mul_(attention)
        grad_locations = torch.stack([grad_x, grad_y], -1).mul_(location_scale)
        return grad_locations, grad_attention, None, None, None


def bilinear_taps(
    sampling_locations: Tensor,
    attention_weights: Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
) -> Tuple[Tensor, Tensor]:
    """Row numbers and weights in the :func:`padded_levels` table of every point's four bilinear
    neighbours: [B, Q, M, L, P, 2] (x, y) in [0, 1], [B, Q, M, L, P] -> index (int32, or int64 for
    a table of 2^31 rows or more) and weights, both [B * Q * M, 4 * L * P]: per (image, query,
    head) the upper-left neighbours of its L * P points, then the upper-right, lower-left and
    lower-right ones.

    A location more than one pixel outside its level is clamped to one pixel beyond the edge,
    where every neighbour with a non-zero weight is border: it reads zero, with zero gradient.
    """
    batch, queries, heads, levels, points, _ = sampling_locations.shape
    layout = _tap_layout(
        spatial_shapes,
        batch,
        heads,
        points,
        sampling_locations.dtype,
        sampling_locations.device,
    )
    locations = sampling_locations.reshape(batch, queries, heads, levels * points, 2)
    attention = attention_weights.reshape(batch, queries, heads, levels * points)
    if records_grad(locations, attention):
        index, weights = _BilinearTaps.apply(locations, attention, *layout)
    else:
        index, weights, _ = _taps(_pixels(locations, layout[0]), attention, *layout)
    return index.view(batch * queries * heads, -1), weights.view(batch * queries * heads, -1)


class GatherWeightedSum(torch.autograd.Function):
    """``(table[index] * weights[..., None]).sum(1)`` for the taps of :func:`bilinear_taps`:
    table [R, D], index and weights [N, 4 * T] (per bag the upper-left neighbours of its T points,
    then the other three neighbour slots) -> [N, D], without the [N, 4 * T, D] gather.

    The backward's table gradient is the same kind of sum seen from the table's side: every row
    collects the weighted output gradients of the entries that read it, entries grouped by row.
    A neighbour's row is its point's upper-left row plus a step that is constant within a level,
    and all four stay inside that level, so ordering the N * T points by upper-left row orders
    each of the four neighbour slots by its own row: one sort of N * T rows instead of N * T * 4.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(table, index, weights)
        return F.embedding_bag(index, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], None, Optional[Tensor]]:
        table, index, weights = ctx.saved_tensors
        grad_output = grad_output.contiguous()
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            rows = table.shape[0]
            bags, points = index.shape[0], index.shape[1] // 4
            slots = index.view(bags, 4, points)
            order = torch.argsort(slots[:, 0].reshape(-1))
            bag = torch.div(order, points, rounding_mode="floor")
            # one bag per (neighbour slot, table row); slot c's entries follow slot c - 1's
            slot_offsets = torch.arange(0, 4 * rows, rows, dtype=index.dtype, device=index.device)
            counts = torch.bincount((slots + slot_offsets[:, None]).view(-1), minlength=4 * rows)
            grad_table = F.embedding_bag(
                bag.repeat(4),
                grad_output,
                counts.cumsum(0) - counts,
                per_sample_weights=weights.view(bags, 4, points)
                .transpose(0, 1)
                .reshape(4, -1)
                .index_select(1, order)
                .view(-1),
                mode="sum",
            )
            grad_table = grad_table.view(4, rows, -1).sum(0)
        if ctx.needs_input_grad[2]:
            grad_weights = entry_dot_products(grad_output, table, index)
        return grad_table, None, grad_weights


def entry_dot_products(grad_output: Tensor, table: Tensor, index: Tensor) -> Tensor:
    """[N, E]: the dot product of ``grad_output`` [N, D] row n and ``table`` [R, D] row
    ``index[n, e]``, the weights' gradient: ``grad_output @ table.T`` at the N x E positions of a
    sparse matrix (``torch.sparse.sampled_addmm``). While compiling, where sparse tensors do not
    trace, the same values come from ``embedding_bag``'s own weight gradient."""
    bags, entries = index.shape
    if torch.compiler.is_compiling():
        with torch.enable_grad():
            weights = grad_output.new_zeros(index.shape, requires_grad=True)
            output = F.embedding_bag(index, table, per_sample_weights=weights, mode="sum")
            return torch.autograd.grad(output, weights, grad_output)[0]
    row_starts = torch.arange(
        0, bags * entries + 1, entries, dtype=index.dtype, device=index.device
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        positions = torch.sparse_csr_tensor(
            row_starts,
            index.reshape(-1),
            grad_output.new_zeros(bags * entries),
            size=(bags, table.shape[0]),
            check_invariants=False,
        )
    products = torch.sparse.sampled_addmm(positions, grad_output, table.t(), beta=0.0)
    return products.values().view(bags, entries)


def gather_weighted_sum(table: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """:class:`GatherWeightedSum`; in an ONNX export a sum over the E entries of gathered rows
    (the exporter would turn ``embedding_bag`` into a Loop over the N bags)."""
    if not torch.onnx.is_in_onnx_export():
        return GatherWeightedSum.apply(table, index, weights)
    index = index.long()  # ONNX Gather takes int64 rows
    output = table.index_select(0, index[:, 0]) * weights[:, :1]
    for entry in range(1, index.shape[1]):
        output = output + table.index_select(0, index[:, entry]) * weights[:, entry : entry + 1]
    return output


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
    table = padded_levels(value, spatial_shapes).view(-1, dim)
    index, weights = bilinear_taps(sampling_locations, attention_weights, spatial_shapes)
    output = gather_weighted_sum(table, index, weights)
    return output.view(batch, queries, heads * dim)
