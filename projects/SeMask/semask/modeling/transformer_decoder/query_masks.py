"""Mask logits of queries: each query's embedding times the per-pixel mask features.

The set criterion trains the masks of the queries it matches to a target, a few of the Q of every
prediction, so most rows of the masks' gradient are zero. The backward here multiplies only the
rows that are not, instead of all of them (on the CPU, where finding them costs no device sync).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor


class _QueryMaskProduct(torch.autograd.Function):
    """``einsum("bqc,bchw->bqhw")`` with a backward over the queries of non-zero gradient."""

    @staticmethod
    def forward(ctx, embeddings: Tensor, features: Tensor) -> Tensor:
        ctx.save_for_backward(embeddings, features)
        return torch.einsum("bqc,bchw->bqhw", embeddings, features)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        embeddings, features = ctx.saved_tensors
        batch, queries, channels = embeddings.shape
        grad = grad.reshape(batch, queries, -1)
        # the forward may have run under autocast: the product's dtype is the gradient's
        pixels = features.reshape(batch, channels, -1).to(grad.dtype)
        weights = embeddings.to(grad.dtype)
        grad_embeddings = grad.new_zeros(embeddings.shape)
        grad_pixels = grad.new_empty(pixels.shape)
        for image in range(batch):
            rows = grad[image].any(1).nonzero().squeeze(1)
            supervised = grad[image] if len(rows) == queries else grad[image].index_select(0, rows)
            grad_embeddings[image].index_copy_(0, rows, supervised @ pixels[image].t())
            torch.mm(weights[image, rows].t(), supervised, out=grad_pixels[image])
        return (
            grad_embeddings.to(embeddings.dtype),
            grad_pixels.view(features.shape).to(features.dtype),
        )


def query_masks(embeddings: Tensor, features: Tensor) -> Tensor:
    """Mask logits [B, Q, H, W] of query embeddings [B, Q, C] on mask features [B, C, H, W].

    With autograd on the CPU, the backward multiplies only the queries whose mask gradient is
    non-zero (same values as the einsum's backward, up to summation order)."""
    trains = torch.is_grad_enabled() and (embeddings.requires_grad or features.requires_grad)
    if (
        trains
        and embeddings.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
    ):
        return _QueryMaskProduct.apply(embeddings, features)
    return torch.einsum("bqc,bchw->bqhw", embeddings, features)
