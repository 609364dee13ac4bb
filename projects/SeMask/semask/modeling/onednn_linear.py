"""Linear layers whose float32 CPU products run in oneDNN (``MODEL.CPU_LINEAR``).

On the CPU, ``F.linear`` hands float32 products to torch's BLAS (MKL in the x86 wheels). oneDNN,
which torch also ships (its convolutions use it), ran this model's linear shapes 1.2-1.4x faster
on a 2-core AMD EPYC (docs/PERFORMANCE.md, sixth round). :func:`route_linears` turns the
``nn.Linear`` layers of a model into :class:`OneDNNLinear`: same parameters, state-dict keys and
hooks; outputs equal ``F.linear``'s up to summation order. Elsewhere (CUDA, other dtypes, CPU
autocast, compiling, exporting, tracing) they are plain ``nn.Linear``. :func:`matmul` is the same
choice for a product of two matrices outside a layer.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .eager import records_grad, runs_eagerly

ONEDNN = "onednn"
TORCH = "torch"
CPU_LINEARS = (ONEDNN, TORCH)


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's linear kernel on the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_applies(x: Tensor, *others: Optional[Tensor]) -> bool:
    """Whether oneDNN computes a product of ``x`` (at least 2-D) and ``others`` (None: absent):
    float32 tensors on the CPU, no CPU autocast, eager, a torch with oneDNN."""
    tensors = [x, *(t for t in others if t is not None)]
    return (
        x.dim() >= 2
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not torch.is_autocast_enabled("cpu")
        and runs_eagerly()
        and onednn_available()
    )


def _onednn_product(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x`` [..., K] @ ``weight`` [N, K].T (+ ``bias`` [N]) -> [..., N], in oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """:func:`_onednn_product` with its gradients: the input's from oneDNN as well, the
    weight's from ``torch.mm`` (a product over all the rows, where MKL was the faster one)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_product(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(
        ctx, grad_output: Tensor
    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_product(grad_output, weight.t().contiguous(), None)
        rows = grad_output.reshape(-1, weight.shape[0])
        if ctx.needs_input_grad[1]:
            grad_weight = rows.t().mm(x.reshape(-1, weight.shape[1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = rows.sum(0)
        return grad_x, grad_weight, grad_bias


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` that computes float32 products of eager CPU tensors with oneDNN."""

    def forward(self, x: Tensor) -> Tensor:
        """[..., in_features] -> [..., out_features]."""
        if not _onednn_applies(x, self.weight, self.bias):
            return F.linear(x, self.weight, self.bias)
        if records_grad(x, self.weight, self.bias):
            return _OneDNNLinearFunction.apply(x, self.weight, self.bias)
        return _onednn_product(x, self.weight, self.bias)


# oneDNN post-ops (algorithm, scalars, approximation) applied to a product's output in-kernel
_POST_OPS = {"gelu": ("gelu", [], "none"), "relu": ("relu", [], "")}


def linear_activation(linear: nn.Linear, x: Tensor, activation: str) -> Tensor:
    """``activation`` ("gelu", exact, or "relu") of ``linear(x)``. For an :class:`OneDNNLinear`
    without autograd, one oneDNN product that applies the activation to its output as it writes
    it, instead of a second pass over the [..., out_features] result."""
    trains = records_grad(x, linear.weight, linear.bias)
    if (
        isinstance(linear, OneDNNLinear)
        and not trains
        and _onednn_applies(x, linear.weight, linear.bias)
    ):
        return torch.ops.mkldnn._linear_pointwise(
            x, linear.weight, linear.bias, *_POST_OPS[activation]
        )
    if activation == "relu":  # nothing else reads the product unless autograd does
        return F.relu(linear(x), inplace=not trains)
    return F.gelu(linear(x))


def matmul(a: Tensor, b: Tensor, backend: str) -> Tensor:
    """``a`` [M, K] @ ``b`` [K, N] -> [M, N] for tensors without gradient: in oneDNN where
    ``backend`` (``MODEL.CPU_LINEAR``) is ``"onednn"`` and :class:`OneDNNLinear` would use it
    (``b`` read in place, as the transposed weight of a linear layer), else with ``torch.mm``."""
    if backend == ONEDNN and not records_grad(a, b) and _onednn_applies(a, b):
        return _onednn_product(a, b.t(), None)
    return a.mm(b)


def route_linears(model: nn.Module, backend: str) -> nn.Module:
    """Make ``model``'s CPU linear layers use ``backend`` (``MODEL.CPU_LINEAR``): ``"onednn"``
    turns every module of type exactly ``nn.Linear`` into :class:`OneDNNLinear` in place (its
    class only: parameters, buffers and hooks stay), ``"torch"`` leaves them. Returns ``model``."""
    if backend not in CPU_LINEARS:
        raise ValueError(f"MODEL.CPU_LINEAR must be one of {list(CPU_LINEARS)}, got {backend!r}")
    if backend == ONEDNN:
        for module in model.modules():
            if type(module) is nn.Linear:
                module.__class__ = OneDNNLinear
    return model
