"""Banded per-pixel cross-entropy, also of logits resized inside the loss: values and gradients
of F.cross_entropy (after F.interpolate), bad labels."""

import pytest
import torch
import torch.nn.functional as F

from semask.modeling.pixel_loss import cross_entropy_sum, row_interpolation


@pytest.mark.parametrize(
    "shape, band_elements", [((2, 5, 7, 9), 1 << 21), ((2, 5, 7, 9), 90), ((1, 3, 4, 1), 1)]
)
def test_equals_torch_cross_entropy_with_its_gradient(shape, band_elements):
    """Bands of one row, of several rows with a shorter last band, and one band for all."""
    batch, classes, height, width = shape
    gen = torch.Generator().manual_seed(height)
    logits = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    labels = torch.randint(0, classes, (batch, height, width), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.3] = 255
    expected = F.cross_entropy(logits, labels, ignore_index=255, reduction="sum")
    (expected_grad,) = torch.autograd.grad(expected * 1.7, logits)
    total = cross_entropy_sum(logits, labels, 255, band_elements=band_elements)
    torch.testing.assert_close(total, expected)
    (grad,) = torch.autograd.grad(total * 1.7, logits)
    torch.testing.assert_close(grad, expected_grad)
    assert torch.autograd.gradcheck(
        lambda x: cross_entropy_sum(x, labels, 255, band_elements=band_elements), (logits,)
    )


def test_all_pixels_ignored_gives_zero_and_zero_gradient():
    logits = torch.randn(1, 4, 3, 3, requires_grad=True)
    total = cross_entropy_sum(logits, torch.full((1, 3, 3), 7), 7)
    total.backward()
    assert total.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("bad", [4, -1, 300])
def test_labels_outside_the_classes_are_named(bad):
    labels = torch.zeros(1, 2, 2, dtype=torch.long)
    labels[0, 1, 0] = bad
    with pytest.raises(ValueError, match=rf"labels \[{bad}\] are outside \[0, 4\)"):
        cross_entropy_sum(torch.zeros(1, 4, 2, 2), labels, 255)


@pytest.mark.parametrize(
    "source, target, align_corners",
    [
        ((4, 6), (16, 24), True),  # the semantic decoder's 4x
        ((5, 7), (19, 30), False),  # Semantic-FPN logits to odd label sizes
        ((6, 5), (6, 13), True),  # columns only
        ((6, 5), (17, 5), False),  # rows only
        ((9, 8), (5, 3), False),  # smaller
        ((1, 1), (4, 4), True),  # a single pixel
    ],
)
def test_resized_equals_interpolate_then_cross_entropy(source, target, align_corners):
    gen = torch.Generator().manual_seed(sum(target))
    logits = torch.randn(2, 3, *source, generator=gen, dtype=torch.float64).requires_grad_(True)
    labels = torch.randint(0, 3, (2, *target), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.3] = 255
    resized = F.interpolate(logits, size=target, mode="bilinear", align_corners=align_corners)
    expected = F.cross_entropy(resized, labels, ignore_index=255, reduction="sum")
    (expected_grad,) = torch.autograd.grad(expected, logits)
    total = cross_entropy_sum(logits, labels, 255, align_corners, band_elements=20)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(torch.autograd.grad(total, logits)[0], expected_grad)
    assert torch.autograd.gradcheck(
        lambda x: cross_entropy_sum(x, labels, 255, align_corners, 20), (logits,)
    )


@pytest.mark.parametrize("align_corners", [True, False])
def test_row_interpolation_reads_the_rows_bilinear_resize_reads(align_corners):
    ramp = torch.randn(1, 1, 7, 1, dtype=torch.float64)
    near, far, matrix = row_interpolation(7, 23, align_corners, torch.float64, ramp.device)
    resized = F.interpolate(ramp, size=(23, 1), mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(matrix @ ramp[0, 0, :, 0], resized.flatten())
    columns = torch.arange(7)
    outside = (columns < near[:, None]) | (columns > far[:, None])
    assert (matrix[outside] == 0).all() and int(far.max()) == 6 and int(near.min()) == 0


def test_resized_names_labels_outside_the_classes():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 3, 3] = 9
    with pytest.raises(ValueError, match=r"labels \[9\] are outside \[0, 4\)"):
        cross_entropy_sum(torch.zeros(1, 4, 2, 2), labels, 255, True)
