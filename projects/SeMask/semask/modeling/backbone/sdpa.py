"""When PyTorch's scaled_dot_product_attention would run unfused on the CPU."""

from typing import Optional

import torch

from ..eager import records_grad


def sdpa_unfused_on_cpu(
    query: torch.Tensor, value: torch.Tensor, bias: Optional[torch.Tensor] = None
) -> bool:
    """Whether SDPA of these tensors takes its unfused math path on the CPU, which costs more
    than the explicit formula: the fused CPU kernel needs query and value heads of one size and
    gives no gradient of an additive bias."""
    if query.device.type != "cpu":
        return False
    return query.shape[-1] != value.shape[-1] or records_grad(bias)
