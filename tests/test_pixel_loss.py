"""Banded per-pixel cross-entropy: values and gradients of F.cross_entropy, bad labels."""

import pytest
import torch
import torch.nn.functional as F

from semask.modeling.pixel_loss import cross_entropy_sum


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
    total = cross_entropy_sum(logits, labels, 255, band_elements)
    torch.testing.assert_close(total, expected)
    (grad,) = torch.autograd.grad(total * 1.7, logits)
    torch.testing.assert_close(grad, expected_grad)
    assert torch.autograd.gradcheck(
        lambda x: cross_entropy_sum(x, labels, 255, band_elements), (logits,)
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
