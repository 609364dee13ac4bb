"""Query mask logits: the einsum's values, and its gradients when only some queries are trained."""

import pytest
import torch

from semask.modeling.transformer_decoder.query_masks import query_masks


def _inputs(batch=2, queries=6, channels=5, size=(4, 7), dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(batch, queries, channels, generator=gen, dtype=dtype)
    features = torch.randn(batch, channels, *size, generator=gen, dtype=dtype)
    return embeddings.requires_grad_(), features.requires_grad_()


def _einsum_grads(embeddings, features, grad):
    reference = torch.einsum("bqc,bchw->bqhw", embeddings, features)
    return reference, torch.autograd.grad(reference, (embeddings, features), grad)


@pytest.mark.parametrize(
    "supervised",
    [
        [[1, 4], [0, 2, 5]],  # a few queries per image, as the matched ones of a criterion
        [[], [3]],  # an image without any supervised query
        [list(range(6)), list(range(6))],  # every query
        [[], []],  # nothing supervised at all
    ],
)
def test_gradients_equal_the_einsums_with_some_queries_supervised(supervised):
    embeddings, features = _inputs()
    gen = torch.Generator().manual_seed(1)
    grad = torch.zeros(2, 6, 4, 7, dtype=torch.float64)
    for image, rows in enumerate(supervised):
        grad[image, rows] = torch.randn(len(rows), 4, 7, generator=gen, dtype=torch.float64)
    masks = query_masks(embeddings, features)
    reference, expected = _einsum_grads(embeddings, features, grad)
    torch.testing.assert_close(masks, reference)
    actual = torch.autograd.grad(masks, (embeddings, features), grad)
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want)
    assert not actual[0][0, [q for q in range(6) if q not in supervised[0]]].any()


def test_gradcheck_with_one_input_frozen():
    embeddings, features = _inputs(batch=1, queries=3, channels=2, size=(2, 3))
    assert torch.autograd.gradcheck(query_masks, (embeddings, features))
    assert torch.autograd.gradcheck(query_masks, (embeddings.detach(), features))


def test_autocast_backward_returns_gradients_in_the_inputs_dtypes():
    embeddings, features = _inputs(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks = query_masks(embeddings, features)
    assert masks.dtype == torch.bfloat16
    masks[:, :2].float().square().sum().backward()
    assert embeddings.grad.dtype == features.grad.dtype == torch.float32
    assert not embeddings.grad[:, 2:].any() and embeddings.grad[:, :2].abs().sum() > 0


def test_without_autograd_it_is_the_plain_product():
    embeddings, features = _inputs()
    with torch.no_grad():
        masks = query_masks(embeddings, features)
    assert masks.grad_fn is None
    torch.testing.assert_close(masks, torch.einsum("bqc,bchw->bqhw", embeddings, features))
