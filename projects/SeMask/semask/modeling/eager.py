"""Whether the model runs eagerly, where CPU-only fast paths may replace standard operators."""

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
