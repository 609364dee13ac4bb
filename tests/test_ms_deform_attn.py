"""Multi-scale deformable attention: the padded-table gather core against a direct loop and a
per-level grid_sample reference, gradients, and the module around it."""

import math

import pytest
import torch

import semask  # noqa: F401
from semask.modeling.pixel_decoder import MSDeformAttn, ms_deform_attn
from semask.modeling.pixel_decoder.ms_deform_attn import short_softmax
from semask.modeling.pixel_decoder.ms_deform_sampling import (
    GatherWeightedSum,
    bilinear_taps,
    padded_levels,
)

SHAPES = [(5, 7), (3, 4), (1, 1)]


def bilinear_zero_padded(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """image [D, H, W] read at continuous (x, y) pixel coordinates whose integer points are pixel
    centres; pixels outside the image read as zero."""
    _, height, width = image.shape
    x0, y0 = math.floor(x), math.floor(y)
    total = torch.zeros(image.shape[0], dtype=image.dtype)
    for yi in (y0, y0 + 1):
        for xi in (x0, x0 + 1):
            weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
            if 0 <= yi < height and 0 <= xi < width:
                total = total + weight * image[:, yi, xi]
    return total


def loop_reference(value, shapes, locations, weights):
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, queries, heads, dim, dtype=value.dtype)
    for b in range(batch):
        for q in range(queries):
            for m in range(heads):
                for lvl, (h, w) in enumerate(shapes):
                    image = value[b, starts[lvl] : starts[lvl + 1], m].T.reshape(dim, h, w)
                    for p in range(points):
                        # normalised [0, 1] location -> pixel-centre coordinates
                        x = locations[b, q, m, lvl, p, 0].item() * w - 0.5
                        y = locations[b, q, m, lvl, p, 1].item() * h - 0.5
                        sample = bilinear_zero_padded(image, x, y)
                        out[b, q, m] += weights[b, q, m, lvl, p] * sample
    return out.reshape(batch, queries, heads * dim)


def per_level_reference(value, shapes, locations, weights):
    """One grid_sample per level on that level alone (zero padding at its own border)."""
    batch, _, heads, dim = value.shape
    out = 0
    for lvl, ((h, w), level) in enumerate(zip(shapes, value.split([h * w for h, w in shapes], 1))):
        image = level.permute(0, 2, 3, 1).reshape(batch * heads, dim, h, w)
        grid = (2 * locations[:, :, :, lvl] - 1).transpose(1, 2).flatten(0, 1)
        sampled = torch.nn.functional.grid_sample(image, grid, align_corners=False)
        level_weights = weights[:, :, :, lvl].transpose(1, 2).flatten(0, 1)[:, None]
        out = out + (sampled * level_weights).sum(-1)
    return out.view(batch, heads * dim, -1).transpose(1, 2)


def random_inputs(
    batch=2, queries=5, heads=2, dim=3, points=2, dtype=torch.float32, seed=0, shapes=SHAPES
):
    gen = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in shapes)
    value = torch.randn(batch, total, heads, dim, generator=gen, dtype=dtype)
    # some locations fall outside the maps (up to 2.5 map sizes away), to exercise the padding
    locations = torch.rand(
        batch, queries, heads, len(shapes), points, 2, generator=gen, dtype=dtype
    )
    locations = locations * 1.4 - 0.2
    locations[..., 0, :] = locations[..., 0, :] * 5 - 2
    logits = torch.randn(batch, queries, heads, len(shapes) * points, generator=gen, dtype=dtype)
    weights = logits.softmax(-1).view(batch, queries, heads, len(shapes), points)
    return value, locations, weights


def test_matches_loop_reference_on_odd_levels():
    value, locations, weights = random_inputs()
    assert ((locations < 0) | (locations > 1)).any(dim=-1).float().mean() > 0.3
    expected = loop_reference(value, SHAPES, locations, weights)
    actual = ms_deform_attn(value, SHAPES, locations, weights)
    assert actual.shape == (2, 5, 6)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shapes, batch, queries, heads, points",
    [
        ([(4, 9), (9, 4), (2, 3), (1, 7)], 3, 7, 3, 3),  # wide, tall, odd, four levels
        ([(6, 6)], 1, 4, 1, 1),  # one level, one point
        ([(1, 5), (5, 1)], 2, 3, 2, 2),  # one-pixel-thin levels
    ],
)
def test_matches_loop_reference_on_several_shapes(shapes, batch, queries, heads, points):
    value, locations, weights = random_inputs(
        batch=batch, queries=queries, heads=heads, points=points, seed=len(shapes), shapes=shapes
    )
    expected = loop_reference(value, shapes, locations, weights)
    actual = ms_deform_attn(value, shapes, locations, weights)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_matches_per_level_grid_sample_at_a_realistic_size():
    # the 512 x 512 encoder's levels scaled down 4x: 16 x 16, 8 x 8, 4 x 4; 8 heads of 32, 4 points
    shapes = [(16, 16), (8, 8), (4, 4)]
    value, locations, weights = random_inputs(
        batch=2, queries=336, heads=8, dim=32, points=4, seed=3, shapes=shapes
    )
    expected = per_level_reference(value, shapes, locations, weights)
    torch.testing.assert_close(
        ms_deform_attn(value, shapes, locations, weights), expected, rtol=1e-5, atol=1e-5
    )


def test_padded_levels_put_each_level_inside_a_zero_border():
    shapes = [(2, 3), (1, 1)]
    value = torch.arange(1.0, 15.0).view(1, 7, 2, 1)  # 7 positions, 2 heads, 1 channel
    table = padded_levels(value, shapes)
    assert table.shape == (1, 4 * 5 + 3 * 3, 2, 1)
    first = table[0, :20, 0, 0].view(4, 5)
    torch.testing.assert_close(first[1:-1, 1:-1], value[0, :6, 0, 0].view(2, 3))
    assert first.sum() == value[0, :6, 0, 0].sum()  # the border is zero
    torch.testing.assert_close(table[0, 20:, 1, 0].view(3, 3)[1, 1], value[0, 6, 1, 0])


def test_bilinear_taps_of_a_pixel_centre_and_of_far_outside_points():
    shapes = [(2, 3)]
    # pixel (x=1, y=0) of a 2 x 3 level: u = (1 + 0.5) / 3, v = 0.5 / 2; then a point far left
    locations = torch.tensor([[1.5 / 3, 0.25], [-7.0, 0.25]]).view(1, 1, 1, 1, 2, 2)
    attention = torch.tensor([0.25, 0.75]).view(1, 1, 1, 1, 2)
    index, weights = bilinear_taps(locations, attention, shapes)
    assert index.dtype == torch.int32 and index.shape == weights.shape == (1, 8)
    index, weights = index.view(4, 2), weights.view(4, 2)  # [neighbour slot, point]
    # padded row of (x, y) is (y + 1) * 5 + (x + 1): the centre's four taps start at (1, 0)
    assert index[:, 0].tolist() == [7, 8, 12, 13]
    torch.testing.assert_close(weights[:, 0], torch.tensor([0.25, 0.0, 0.0, 0.0]))
    # clamped to x = -1: its taps with non-zero weight are on the border column
    assert all(int(i) % 5 == 0 for i, w in zip(index[:, 1], weights[:, 1]) if w != 0)
    assert weights[:, 1].sum().item() == pytest.approx(0.75)


def test_bilinear_tap_weights_gradcheck_inside_and_outside_the_clamp_range():
    """The written-out backward of the tap weights, for points inside, near and far outside two
    levels (zero location gradient where clamped); without autograd the same index and weights."""
    shapes = [(3, 4), (2, 1)]
    gen = torch.Generator().manual_seed(1)
    locations = torch.rand(2, 3, 2, 2, 3, 2, generator=gen, dtype=torch.float64) * 4 - 1.5
    attention = torch.rand(2, 3, 2, 2, 3, generator=gen, dtype=torch.float64)
    inputs = (locations.requires_grad_(True), attention.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda loc, a: bilinear_taps(loc, a, shapes)[1], inputs)
    index, weights = bilinear_taps(locations, attention, shapes)
    with torch.no_grad():
        plain_index, plain_weights = bilinear_taps(locations, attention, shapes)
    assert torch.equal(index, plain_index) and torch.equal(weights, plain_weights)
    (weights * torch.rand(weights.shape, generator=gen, dtype=weights.dtype)).sum().backward()
    size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64).view(2, 1, 2)
    pixel = locations.detach() * size - 0.5
    far = (pixel < -1.0) | (pixel > size)  # clamped coordinates: no gradient
    assert far.any() and locations.grad[far].abs().sum() == 0
    assert (locations.grad[~far] != 0).all()


def test_gather_weighted_sum_equals_the_dense_gather_and_gradchecks():
    """Taps of points inside, on the edge of and far outside two levels, two images: rows read
    by several taps, border rows, rows nobody reads."""
    shapes = [(3, 4), (2, 1)]
    gen = torch.Generator().manual_seed(0)
    locations = torch.rand(2, 5, 2, 2, 3, 2, generator=gen, dtype=torch.float64) * 3 - 1
    locations[0, 0] = 1.0
    attention = torch.rand(2, 5, 2, 2, 3, generator=gen, dtype=torch.float64)
    index, weights = bilinear_taps(locations, attention, shapes)
    rows = 2 * sum((h + 2) * (w + 2) for h, w in shapes) * 2
    table = torch.randn(rows, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = weights.detach().requires_grad_(True)
    expected = (table[index.long()] * weights[..., None]).sum(1)
    torch.testing.assert_close(GatherWeightedSum.apply(table, index, weights), expected)
    assert torch.autograd.gradcheck(
        lambda t, w: GatherWeightedSum.apply(t, index, w), (table, weights)
    )


def test_gradcheck_float64():
    value, locations, weights = random_inputs(
        batch=1, queries=2, heads=2, dim=2, dtype=torch.float64
    )
    inputs = tuple(t.clone().requires_grad_(True) for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn(v, SHAPES, loc, w), inputs, eps=1e-6, atol=1e-5
    )


def test_gradcheck_float64_batch_and_four_levels():
    shapes = [(3, 5), (2, 2), (1, 3), (4, 1)]
    value, locations, weights = random_inputs(
        batch=2, queries=3, heads=2, dim=2, points=2, dtype=torch.float64, seed=5, shapes=shapes
    )
    inputs = tuple(t.clone().requires_grad_(True) for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn(v, shapes, loc, w), inputs, eps=1e-6, atol=1e-5
    )


def test_onnx_export_gathers_without_a_loop_and_matches_eager(tmp_path):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    wrapper = ModuleWithShapes(make_module()).eval()
    inputs = module_inputs(2)
    with torch.no_grad():
        expected = wrapper(*inputs)
        program = torch.onnx.export(wrapper, inputs, dynamo=True, verbose=False)
    path = tmp_path / "msdeform.onnx"
    program.save(str(path))
    assert "Loop" not in {node.op_type for node in onnx.load(str(path)).graph.node}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    torch.testing.assert_close(
        torch.from_numpy(session.run(None, feeds)[0]), expected, rtol=1e-5, atol=1e-5
    )


def test_shape_mismatch_is_reported():
    value, locations, weights = random_inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn(value, [(5, 7), (3, 4), (2, 2)], locations, weights)


def make_module(d_model=16, levels=3, heads=4, points=2):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model, levels, heads, points)
    torch.nn.init.normal_(module.sampling_offsets.weight, std=0.1)
    torch.nn.init.normal_(module.attention_weights.weight, std=0.1)
    return module


def module_inputs(batch, d_model=16, shapes=SHAPES):
    total = sum(h * w for h, w in shapes)
    query = torch.randn(batch, 4, d_model)
    reference = torch.rand(batch, 4, len(shapes), 2)
    flat = torch.randn(batch, total, d_model)
    return query, reference, flat


class ModuleWithShapes(torch.nn.Module):
    """``module`` on the levels of ``SHAPES`` (tensor inputs only, as an exporter needs)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, query, reference, flat):
        return self.module(query, reference, flat, SHAPES)


def test_initial_offsets_point_along_each_head_direction():
    module = MSDeformAttn(8, n_levels=2, n_heads=4, n_points=3)
    grid = module.sampling_offsets.bias.view(4, 2, 3, 2)
    # head 0 looks along +x, head 1 along +y (after scaling by the largest component)
    torch.testing.assert_close(grid[0, 1, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(grid[0, 1, :, 1], torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[1, 0, 2], torch.tensor([0.0, 3.0]), atol=1e-6, rtol=0)


def test_module_output_and_padding_mask():
    module = make_module()
    query, reference, flat = module_inputs(2)
    out = module(query, reference, flat, SHAPES)
    assert out.shape == (2, 4, 16) and torch.isfinite(out).all()
    # masking every value leaves only the output projection's bias
    mask = torch.ones(2, flat.shape[1], dtype=torch.bool)
    masked = module(query, reference, flat, SHAPES, padding_mask=mask)
    torch.testing.assert_close(masked, module.output_proj.bias.expand_as(masked))


def test_single_pixel_levels_and_empty_batch():
    module = make_module()
    shapes = [(1, 1), (1, 1), (1, 1)]
    query, reference, flat = module_inputs(2, shapes=shapes)
    assert torch.isfinite(module(query, reference, flat, shapes)).all()
    query, reference, flat = module_inputs(0)
    assert module(query, reference, flat, SHAPES).shape == (0, 4, 16)


def test_wrong_number_of_levels_is_reported():
    module = make_module()
    query, reference, flat = module_inputs(1, shapes=SHAPES[:2])
    with pytest.raises(ValueError, match="3 levels, got 2"):
        module(query, reference[:, :, :2], flat, SHAPES[:2])


def test_bf16_autocast_runs_the_projections_in_bf16_and_the_sampling_in_float32():
    """Value and output projections follow autocast; the offsets and attention weights that place
    and weigh the samples, and the sampling, stay float32. The result is within bf16 rounding
    (relative norm error under 2%) of a float32 run on the same bf16-rounded inputs."""
    module = make_module()
    query, reference, flat = module_inputs(2)
    dtypes = {}
    for name in ("value_proj", "output_proj", "sampling_offsets", "attention_weights"):
        getattr(module, name).register_forward_hook(
            lambda _, __, out, name=name: dtypes.__setitem__(name, out.dtype)
        )
    with torch.no_grad():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = module(query.bfloat16(), reference, flat.bfloat16(), SHAPES)
        assert dtypes == {
            "value_proj": torch.bfloat16,
            "output_proj": torch.bfloat16,
            "sampling_offsets": torch.float32,
            "attention_weights": torch.float32,
        }
        expected = module(query.bfloat16().float(), reference, flat.bfloat16().float(), SHAPES)
    assert torch.isfinite(out).all()
    assert ((out.float() - expected).norm() / expected.norm()).item() < 2e-2


def test_short_softmax_equals_softmax_with_and_without_autograd():
    logits = torch.randn(2, 9, 8, 12) * 30  # large logits: the maximum is subtracted first
    with torch.no_grad():
        fast = short_softmax(logits)
    torch.testing.assert_close(fast, logits.softmax(-1), rtol=1e-5, atol=1e-7)
    assert torch.isfinite(fast).all()
    logits.requires_grad_()
    grad = torch.randn_like(logits)
    (ours,) = torch.autograd.grad(short_softmax(logits), logits, grad)
    (expected,) = torch.autograd.grad(logits.softmax(-1), logits, grad)
    torch.testing.assert_close(ours, expected)
