"""Optimizer of the official SeMask/Mask2Former recipe: per-parameter groups and clipping; AdamW
fused where PyTorch has the kernel for the device."""

import itertools
from typing import Any, Dict, List, Type

import torch
from detectron2.config import CfgNode
from detectron2.layers import FrozenBatchNorm2d
from detectron2.solver.build import maybe_add_gradient_clipping
from torch import nn

NORM_MODULES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    FrozenBatchNorm2d,
)
# Parameters named like this are position tables and get no weight decay.
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def build_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_embed: float,
    backbone_multiplier: float,
) -> List[Dict[str, Any]]:
    """One group per trainable parameter (shared tensors once), with its own lr and decay.

    Backbone parameters (module names containing ``backbone``) get ``base_lr *
    backbone_multiplier``; norm layers get ``weight_decay_norm``; ``nn.Embedding`` weights get
    ``weight_decay_embed``; relative position tables and absolute position embeddings get none.
    """
    groups: List[Dict[str, Any]] = []
    seen = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr, decay = base_lr, weight_decay
            if "backbone" in module_name:
                lr = base_lr * backbone_multiplier
            if any(name in param_name for name in NO_DECAY_NAMES):
                decay = 0.0
            if isinstance(module, NORM_MODULES):
                decay = weight_decay_norm
            if isinstance(module, nn.Embedding):
                decay = weight_decay_embed
            groups.append({"params": [param], "lr": lr, "weight_decay": decay})
    return groups


def with_full_model_clipping(
    optimizer_cls: Type[torch.optim.Optimizer], max_norm: float
) -> Type[torch.optim.Optimizer]:
    """A subclass of ``optimizer_cls`` whose ``step`` first clips the L2 norm of all gradients
    together (the whole model as one vector) to ``max_norm``."""
    if max_norm <= 0:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be positive, got {max_norm}")

    class FullModelGradientClipping(optimizer_cls):
        def step(self, closure=None):
            params = itertools.chain(*[group["params"] for group in self.param_groups])
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = f"{optimizer_cls.__name__}WithFullModelClipping"
    return FullModelGradientClipping


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (fused where :func:`fused_adamw_available`) or SGD (``SOLVER.OPTIMIZER``) over
    :func:`build_param_groups`, with gradient clipping as ``SOLVER.CLIP_GRADIENTS`` says
    (``full_model``, or detectron2's ``value``/``norm``).
    """
    solver = cfg.SOLVER
    groups = build_param_groups(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        weight_decay_embed=solver.WEIGHT_DECAY_EMBED,
        backbone_multiplier=solver.BACKBONE_MULTIPLIER,
    )
    if solver.OPTIMIZER == "ADAMW":
        fused = fused_adamw_available(groups)
        optimizer_cls, kwargs = torch.optim.AdamW, {"fused": True} if fused else {}
    elif solver.OPTIMIZER == "SGD":
        optimizer_cls, kwargs = torch.optim.SGD, {"momentum": solver.MOMENTUM}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be 'ADAMW' or 'SGD', got {solver.OPTIMIZER!r}")
    clip = solver.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_cls = with_full_model_clipping(optimizer_cls, clip.CLIP_VALUE)
    optimizer = optimizer_cls(groups, lr=solver.BASE_LR, **kwargs)
    if clip.CLIP_TYPE != "full_model":
        optimizer = maybe_add_gradient_clipping(cfg, optimizer)
    if kwargs.get("fused"):
        optimizer.register_load_state_dict_post_hook(_stay_fused)
    return optimizer


def fused_adamw_available(groups: List[Dict[str, Any]]) -> bool:
    """Whether this PyTorch has a fused AdamW (one kernel over all tensors of a group, about 2x
    faster than the per-tensor loop) for the device of the parameters in ``groups``."""
    params = [param for group in groups for param in group["params"]]
    if not params or len({param.device for param in params}) > 1:
        return False
    try:
        torch.optim.AdamW([torch.zeros(1, device=params[0].device)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _stay_fused(optimizer: torch.optim.Optimizer) -> None:
    """After ``load_state_dict``: the loaded groups carry the implementation flags of the
    optimizer that saved them (a checkpoint of the per-tensor loop has ``fused=None``); keep
    this one fused, with each ``step`` count where the fused kernel reads it (the parameter's
    device, float32)."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device=param.device, dtype=torch.float32)
