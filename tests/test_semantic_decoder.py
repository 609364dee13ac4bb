"""The parameter-free semantic decoder that sums the per-stage priors."""

import pytest
import torch
from torch import nn

import semask  # noqa: F401
from semask.modeling.heads import aggregate_priors


def independent_sum(priors):
    """docs/DESIGN.md section 2 with nn.Upsample modules, written separately from the function."""
    up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    size = priors[0].shape[-2:]
    total = priors[0].clone()
    for steps, prior in enumerate(priors[1:], start=1):
        for _ in range(steps):
            prior = up2(prior)
        total += nn.Upsample(size=size, mode="bilinear", align_corners=True)(prior)
    return nn.Upsample(size=(4 * size[0], 4 * size[1]), mode="bilinear", align_corners=True)(total)


def priors_of(height, width, batch=2, classes=3):
    gen = torch.Generator().manual_seed(0)
    sizes = [(height, width)]
    for _ in range(3):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return [torch.randn(batch, classes, h, w, generator=gen) for h, w in sizes]


@pytest.mark.parametrize("size", [(8, 12), (15, 17), (1, 1)])
def test_matches_the_documented_formula(size):
    priors = priors_of(*size)
    out = aggregate_priors(priors)
    assert out.shape == (2, 3, 4 * size[0], 4 * size[1])
    torch.testing.assert_close(out, independent_sum(priors))


def test_odd_sizes_upsample_stepwise_then_resize():
    """A 2x3 map reaches 16x24 after three x2 steps; that differs from one direct resize."""
    priors = [torch.zeros(1, 1, 15, 17)] * 3 + [torch.randn(1, 1, 2, 3)]
    out = aggregate_priors(priors)
    direct = nn.functional.interpolate(
        priors[3], size=(60, 68), mode="bilinear", align_corners=True
    )
    assert not torch.allclose(out, direct)
    torch.testing.assert_close(out, independent_sum(priors))


def test_single_prior_is_only_upsampled():
    prior = torch.randn(1, 2, 5, 6)
    expected = nn.functional.interpolate(prior, size=(20, 24), mode="bilinear", align_corners=True)
    torch.testing.assert_close(aggregate_priors([prior]), expected)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="no prior maps"):
        aggregate_priors([])
    with pytest.raises(ValueError, match="prior 1 has shape"):
        aggregate_priors([torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 4, 4)])


def test_reproduces_the_official_semantic_head(reference_dir):
    outputs = torch.load(reference_dir / "micro_msdeform_outputs.pt")
    priors = [outputs["cls_outputs"][f"res{i}"] for i in range(2, 6)]
    expected = outputs["sem_head_pred"]
    actual = aggregate_priors(priors)
    assert ((actual - expected).norm() / expected.norm()).item() <= 1e-4
