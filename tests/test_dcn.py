"""Modulated deformable convolution (DCNv2) on torchvision: layout and semantics."""

import pytest
import torch
import torch.nn.functional as F

import semask  # noqa: F401
from semask.modeling.pixel_decoder.dcn import ModulatedDeformConv

GROUPS = 2
POINTS = 9


def make_dcn():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv(4, 3, 3, padding=1, deformable_groups=GROUPS)
    torch.nn.init.normal_(dcn.bias)
    return dcn


def set_offsets(dcn, dy: float, dx: float, mask_logit: float) -> None:
    """Constant offsets for every group and kernel point through conv_offset_mask's bias, laid
    out as the official checkpoints are: thirds (o1, o2, m), offsets = cat(o1, o2) as (dy, dx)
    pairs."""
    bias = torch.empty(3 * GROUPS * POINTS)
    bias[: 2 * GROUPS * POINTS : 2] = dy
    bias[1 : 2 * GROUPS * POINTS : 2] = dx
    bias[2 * GROUPS * POINTS :] = mask_logit
    with torch.no_grad():
        dcn.conv_offset_mask.bias.copy_(bias)


def test_zero_init_is_half_a_plain_convolution():
    dcn = make_dcn()
    x = torch.randn(2, 4, 6, 7)
    expected = 0.5 * F.conv2d(x, dcn.weight, padding=1) + dcn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(dcn(x, x), expected, rtol=1e-5, atol=1e-5)


def shifted_conv(dcn, x, dy: int, dx: int):
    """Plain 3x3 convolution whose taps read the zero-padded input at (row + dy, col + dx)."""
    height, width = x.shape[-2:]
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad))
    top, left = pad - 1 + dy, pad - 1 + dx
    window = padded[..., top : top + height + 2, left : left + width + 2]
    return F.conv2d(window, dcn.weight, dcn.bias)


@pytest.mark.parametrize("dy,dx", [(0, 1), (1, 0), (-1, 2)])
def test_integer_offsets_shift_the_samples(dy, dx):
    """Offset (dy, dx) makes every tap read the input at (row + dy, col + dx)."""
    dcn = make_dcn()
    set_offsets(dcn, dy, dx, mask_logit=30.0)
    x = torch.randn(1, 4, 6, 7)
    torch.testing.assert_close(dcn(x, x), shifted_conv(dcn, x, dy, dx), rtol=1e-5, atol=1e-5)


def test_half_pixel_offset_averages_neighbours():
    dcn = make_dcn()
    set_offsets(dcn, 0.0, 0.5, mask_logit=30.0)
    x = torch.randn(1, 4, 5, 6)
    expected = (shifted_conv(dcn, x, 0, 0) + shifted_conv(dcn, x, 0, 1)) / 2
    torch.testing.assert_close(dcn(x, x), expected, rtol=1e-5, atol=1e-5)


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="deformable_groups 3"):
        ModulatedDeformConv(4, 4, deformable_groups=3)


def test_single_pixel_input_and_bf16_autocast():
    """Under bf16 autocast the deformable convolution runs in float32: equal (to float32 rounding)
    to a float32 run on the same bf16-rounded inputs, with fractional offsets."""
    dcn = make_dcn()
    x = torch.randn(2, 4, 1, 1)
    expected = 0.5 * F.conv2d(x, dcn.weight, padding=1) + dcn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(dcn(x, x), expected, rtol=1e-5, atol=1e-5)
    set_offsets(dcn, 0.3, -0.6, mask_logit=0.5)
    g = torch.Generator().manual_seed(3)
    x, offset_input = (torch.randn(2, 4, 5, 5, generator=g).bfloat16() for _ in range(2))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = dcn(x, offset_input)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, dcn(x.float(), offset_input.float()))
