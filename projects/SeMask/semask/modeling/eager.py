"""Whether the model runs eagerly, where CPU-only fast paths may replace standard operators, and
whether autograd records an operation, where they must keep its gradients."""

from typing import Optional

import torch


def runs_eagerly() -> bool:
    """Not inside ``torch.compile``, ``torch.export``, an ONNX export or a TorchScript trace:
    the places where only standard operators may appear."""
    return not (
        torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
    )


def records_grad(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd records an operation on ``tensors`` (None: absent)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
