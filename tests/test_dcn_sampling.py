"""CPU inference of DCNv2 by grid_sample and one product equals torchvision's deform_conv2d."""

import pytest
import torch
from torchvision.ops import deform_conv2d

from semask.modeling.pixel_decoder import dcn as dcn_module
from semask.modeling.pixel_decoder.dcn import ModulatedDeformConv
from semask.modeling.pixel_decoder.dcn_sampling import deform_conv2d_by_sampling

# (batch, channels, out channels, size, kernel, stride, padding, dilation, groups, bias)
CASES = [
    (1, 8, 6, (13, 17), (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    (2, 8, 4, (12, 9), (3, 3), (2, 2), (1, 1), (1, 1), 2, False),
    (1, 12, 5, (10, 11), (3, 3), (1, 1), (2, 2), (2, 2), 4, True),
    (2, 4, 3, (7, 8), (1, 3), (1, 2), (0, 1), (1, 1), 2, True),
    (1, 6, 2, (1, 1), (3, 3), (1, 1), (1, 1), (1, 1), 3, True),
    (1, 4, 4, (9, 6), (2, 2), (1, 1), (0, 0), (1, 1), 1, True),
]


def _inputs(case, offset_scale, seed=0):
    batch, channels, out_channels, size, kernel, stride, padding, dilation, groups, bias = case
    g = torch.Generator().manual_seed(seed)
    out_size = [
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    ]
    points = kernel[0] * kernel[1]
    x = torch.randn(batch, channels, *size, generator=g)
    return x, {
        "offset": torch.randn(batch, 2 * groups * points, *out_size, generator=g) * offset_scale,
        "weight": torch.randn(out_channels, channels, *kernel, generator=g),
        "bias": torch.randn(out_channels, generator=g) if bias else None,
        "mask": torch.rand(batch, groups * points, *out_size, generator=g),
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
    }


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("offset_scale", [0.0, 0.7, 4.0])  # 4 pixels: many taps off the map
def test_sampling_equals_torchvision(case, offset_scale):
    x, args = _inputs(case, offset_scale)
    expected = deform_conv2d(x, **args)
    out = deform_conv2d_by_sampling(x, **args)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_elements", [1, 500, 1 << 30])
def test_bands_of_rows_give_the_same_result(chunk_elements):
    x, args = _inputs(CASES[1], 2.0, seed=3)
    whole = deform_conv2d_by_sampling(x, **args, chunk_elements=1 << 30)
    banded = deform_conv2d_by_sampling(x, **args, chunk_elements=chunk_elements)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # torchvision's own trace
def test_cpu_inference_samples_and_training_keeps_torchvision(monkeypatch):
    calls = []
    original = dcn_module.deform_conv2d_by_sampling
    monkeypatch.setattr(
        dcn_module,
        "deform_conv2d_by_sampling",
        lambda *args, **kwargs: calls.append("sampling") or original(*args, **kwargs),
    )
    torch.manual_seed(0)
    layer = ModulatedDeformConv(8, 4, 3, padding=1, deformable_groups=2)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.3)
    x, guide = torch.randn(1, 8, 9, 10), torch.randn(1, 8, 9, 10)
    with torch.no_grad():
        fast = layer(x, guide)
    assert calls == ["sampling"]
    trained = layer(x, guide)  # parameters require grad: torchvision's op and its backward
    assert calls == ["sampling"] and trained.requires_grad
    torch.testing.assert_close(fast, trained.detach(), rtol=1e-5, atol=1e-5)
    layer.requires_grad_(False)
    traced = torch.jit.trace(layer, (x, guide), check_trace=False)
    assert calls == ["sampling"]  # tracing (as exporting) keeps the standard operator
    assert "deform_conv2d" in str(traced.graph)
