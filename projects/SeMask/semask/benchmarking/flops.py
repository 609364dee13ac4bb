"""FLOPs, parameters and activations per module group, with fvcore (``detectron2.utils.analysis``
does not import on the detectron2 0.6 sdist, whose ``detectron2.export`` needs caffe2).

fvcore counts one multiply-add as one "flop"; :func:`analyze` reports those as ``macs`` and
GFLOPs as 2 x MACs, the convention of the matmul rate in :func:`.timing.matmul_rate`.
"""

from collections import Counter
from dataclasses import dataclass
from math import prod
from typing import Any, Dict, List

import torch
from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis, parameter_count
from fvcore.nn.jit_handles import get_shape
from torch import nn

from ..export import SemanticScores, example_image


def sdpa_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::scaled_dot_product_attention``: q [..., L, E] k [..., S, E] v [..., S, Ev] cost
    L x S x E (scores) + L x S x Ev (weighted sum) multiply-adds per batch element."""
    query, _, value = (get_shape(x) for x in inputs[:3])
    *batch, length, dim = query
    sources, value_dim = value[-2], value[-1]
    return prod(batch) * length * sources * (dim + value_dim)


def grid_sample_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::grid_sampler`` (bilinear): four weighted reads per output element."""
    return 4 * prod(get_shape(outputs[0]))


def baddbmm_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::baddbmm`` (nn.MultiheadAttention's scores): [B, n, m] x [B, m, p] is B n m p."""
    batch, rows, inner = get_shape(inputs[1])
    return batch * rows * inner * get_shape(inputs[2])[-1]


def gather_weighted_sum_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """MSDeformAttn's ``GatherWeightedSum``: one multiply-add per entry [N, E] and channel D of
    the table [R, D]."""
    return prod(get_shape(inputs[1])) * get_shape(inputs[0])[-1]


OP_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_macs,
    "aten::grid_sampler": grid_sample_macs,
    "aten::baddbmm": baddbmm_macs,
    "prim::PythonOp.GatherWeightedSum": gather_weighted_sum_macs,
}


@dataclass
class Analysis:
    """Totals and per-group rows of one model at one input size."""

    macs: int
    parameters: int
    activations: int
    groups: List[Dict[str, Any]]
    uncounted: Dict[str, int]

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9


def module_groups(model: nn.Module, depth: int) -> List[str]:
    """Names of ``model``'s submodules ``depth`` levels down (or shallower leaves), in order."""
    names = [name for name, _ in model.named_modules() if name and name.count(".") < depth]
    return [
        name
        for name in names
        if name.count(".") == depth - 1 or not any(other.startswith(name + ".") for other in names)
    ]


def analyze(model: nn.Module, height: int, width: int, depth: int = 2) -> Analysis:
    """Count the eval-mode semantic inference of ``model`` (a SeMask model) on one uint8
    [3, height, width] image; the group rows are the submodules ``depth`` levels down."""
    wrapper = SemanticScores(model.eval())
    inputs = (example_image(height, width),)
    with torch.no_grad():
        flops = FlopCountAnalysis(wrapper, inputs).set_op_handle(**OP_HANDLES)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        activations = ActivationCountAnalysis(wrapper, inputs)
        activations.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_flops, by_acts = flops.by_module(), activations.by_module()
    params = parameter_count(model)
    groups = [
        {
            "module": name,
            "macs": by_flops.get(f"model.{name}", 0),
            "parameters": params.get(name, 0),
            "activations": by_acts.get(f"model.{name}", 0),
        }
        for name in module_groups(model, depth)
    ]
    uncounted: Counter = Counter(flops.unsupported_ops())
    return Analysis(
        macs=flops.total(),
        parameters=params[""],
        activations=activations.total(),
        groups=groups,
        uncounted=dict(sorted(uncounted.items())),
    )


def format_analysis(analysis: Analysis) -> str:
    """The group table, the totals and the ``uncounted`` operators line."""
    lines = [f"{'module':<40} {'GFLOPs':>9} {'params (M)':>11} {'activations (M)':>16}"]
    rows = analysis.groups + [
        {
            "module": "total",
            "macs": analysis.macs,
            "parameters": analysis.parameters,
            "activations": analysis.activations,
        }
    ]
    for row in rows:
        lines.append(
            f"{row['module']:<40} {2 * row['macs'] / 1e9:>9.2f} {row['parameters'] / 1e6:>11.3f} "
            f"{row['activations'] / 1e6:>16.2f}"
        )
    uncounted = ", ".join(f"{op} x{n}" for op, n in analysis.uncounted.items()) or "none"
    lines.append(
        f"uncounted operators (no FLOP handle, mostly elementwise; not in the totals): {uncounted}"
    )
    return "\n".join(lines)
