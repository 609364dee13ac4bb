"""Mask logits of queries: each query's embedding times the per-pixel mask features.

The set criterion trains the masks of the queries it matches to a target, a few of the Q of every
prediction, so most rows of the masks' gradient are zero. The backward here multiplies only the
rows that are not, for all predictions at once (on the CPU, where finding them costs no device
sync), and takes each prediction's gradient as it comes, without concatenating them.
"""

from typing import List, Optional, Sequence

import torch
from torch import Tensor

from ..eager import records_grad, runs_eagerly


class _QueryMaskProduct(torch.autograd.Function):
    """Mask features [B, C, H, W] and P embeddings [B, Q, C] -> P mask logits [B, Q, H, W], from
    one ``einsum("bqc,bchw->bqhw")``, with a backward over the rows of non-zero gradient."""

    @staticmethod
    def forward(ctx, features: Tensor, *embeddings: Tensor):
        ctx.save_for_backward(features, *embeddings)
        return tuple(_product(embeddings, features))

    @staticmethod
    def backward(ctx, *grads: Optional[Tensor]):
        features, *embeddings = ctx.saved_tensors
        batch, channels = features.shape[:2]
        trained = [i for i, grad in enumerate(grads) if grad is not None]
        # the forward may have run under autocast: the product's dtype is the gradient's
        dtype = grads[trained[0]].dtype
        pixels = features.reshape(batch, channels, -1).to(dtype)
        grad_embeddings = [torch.zeros_like(e, dtype=dtype) for e in embeddings]
        grad_pixels = torch.empty_like(pixels)
        for image in range(batch):
            rows, supervised, weights = [], [], []
            for i in trained:
                grad = grads[i][image].reshape(grads[i].shape[1], -1)
                nonzero = grad.any(1).nonzero().squeeze(1)
                rows.append(nonzero)
                supervised.append(grad.index_select(0, nonzero))
                weights.append(embeddings[i][image].index_select(0, nonzero).to(dtype))
            supervised, weights = torch.cat(supervised), torch.cat(weights)
            torch.mm(weights.t(), supervised, out=grad_pixels[image])
            grad_rows = (supervised @ pixels[image].t()).split([len(r) for r in rows])
            for i, nonzero, values in zip(trained, rows, grad_rows):
                grad_embeddings[i][image].index_copy_(0, nonzero, values)
        return (
            grad_pixels.view(features.shape).to(features.dtype),
            *(grad.to(e.dtype) for grad, e in zip(grad_embeddings, embeddings)),
        )


def _product(embeddings: Sequence[Tensor], features: Tensor) -> List[Tensor]:
    stacked = torch.cat(list(embeddings), 1) if len(embeddings) > 1 else embeddings[0]
    product = torch.einsum("bqc,bchw->bqhw", stacked, features)
    return list(product.split([e.shape[1] for e in embeddings], 1))


def mask_logits(embeddings: Sequence[Tensor], mask_features: Tensor) -> List[Tensor]:
    """Mask logits [B, Q, H, W] of each prediction's query embeddings [B, Q, C] on
    ``mask_features`` [B, C, H, W], all from one matrix product.

    With autograd on the CPU, the backward multiplies only the queries whose mask gradient is
    non-zero, all predictions' together (the values of the einsum's backward, up to summation
    order)."""
    embeddings = list(embeddings)
    trains = records_grad(mask_features, *embeddings)
    if trains and mask_features.device.type == "cpu" and runs_eagerly():
        return list(_QueryMaskProduct.apply(mask_features, *embeddings))
    return _product(embeddings, mask_features)
