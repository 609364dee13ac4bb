"""Query mask logits: the einsum's values, and its gradients when only some queries are trained."""

import pytest
import torch

from semask.modeling.transformer_decoder.query_masks import mask_logits

PREDICTIONS, BATCH, QUERIES, CHANNELS, SIZE = 3, 2, 6, 5, (4, 7)


def _inputs(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    embeddings = [
        torch.randn(BATCH, QUERIES, CHANNELS, generator=gen, dtype=dtype).requires_grad_()
        for _ in range(PREDICTIONS)
    ]
    features = torch.randn(BATCH, CHANNELS, *SIZE, generator=gen, dtype=dtype)
    return embeddings, features.requires_grad_()


def _einsums(embeddings, features):
    return [torch.einsum("bqc,bchw->bqhw", e, features) for e in embeddings]


@pytest.mark.parametrize(
    "supervised",
    [
        [[1, 4], [0, 2, 5]],  # a few queries per image, as the matched ones of a criterion
        [[], [3]],  # an image without any supervised query
        [list(range(QUERIES))] * BATCH,  # every query
        [[], []],  # nothing supervised at all
    ],
)
def test_gradients_equal_the_einsums_with_some_queries_supervised(supervised):
    embeddings, features = _inputs()
    gen = torch.Generator().manual_seed(1)
    grads = []
    for _ in range(PREDICTIONS):
        grad = torch.zeros(BATCH, QUERIES, *SIZE, dtype=torch.float64)
        for image, rows in enumerate(supervised):
            grad[image, rows] = torch.randn(len(rows), *SIZE, generator=gen, dtype=torch.float64)
        grads.append(grad)
    masks, references = mask_logits(embeddings, features), _einsums(embeddings, features)
    for mask, reference in zip(masks, references):
        torch.testing.assert_close(mask, reference)
    inputs = (*embeddings, features)
    actual = torch.autograd.grad(masks, inputs, grads)
    expected = torch.autograd.grad(references, inputs, grads)
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want)
    unsupervised = [q for q in range(QUERIES) if q not in supervised[0]]
    assert not actual[0][0, unsupervised].any()


def test_predictions_without_gradient_are_left_out():
    """Only the last prediction feeds the loss: the others get zero gradient."""
    embeddings, features = _inputs()
    masks = mask_logits(embeddings, features)
    grads = torch.autograd.grad(masks[-1].square().sum(), (*embeddings, features))
    expected = torch.autograd.grad(_einsums(embeddings, features)[-1].square().sum(), features)
    assert not grads[0].any() and not grads[1].any() and grads[2].abs().sum() > 0
    torch.testing.assert_close(grads[-1], expected[0])


def test_gradcheck():
    embeddings, features = _inputs()
    small = [e[:1, :3, :2].detach().requires_grad_() for e in embeddings[:2]]
    feature = features[:1, :2, :2, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda f, *e: mask_logits(e, f), (feature, *small))
    assert torch.autograd.gradcheck(lambda f: mask_logits([s.detach() for s in small], f), feature)


def test_autocast_backward_returns_gradients_in_the_inputs_dtypes():
    embeddings, features = _inputs(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks = mask_logits(embeddings, features)
    assert all(mask.dtype == torch.bfloat16 for mask in masks)
    masks[0][:, :2].float().square().sum().backward()
    assert embeddings[0].grad.dtype == features.grad.dtype == torch.float32
    assert not embeddings[0].grad[:, 2:].any() and embeddings[0].grad[:, :2].abs().sum() > 0


def test_without_autograd_it_is_the_plain_product():
    embeddings, features = _inputs()
    with torch.no_grad():
        masks = mask_logits(embeddings, features)
    assert all(mask.grad_fn is None for mask in masks)
    for mask, reference in zip(masks, _einsums(embeddings, features)):
        torch.testing.assert_close(mask, reference)
