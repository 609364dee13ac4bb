"""Training steps: the plain and the mixed-precision step (float16 with loss scaling on CUDA,
bfloat16 on CPU or CUDA), both stopping at a non-finite loss term before the optimizer step."""

import logging
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

import torch
from detectron2.config import CfgNode
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

PRECISIONS = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_dtype(cfg: CfgNode) -> Optional[torch.dtype]:
    """The autocast dtype that ``SOLVER.AMP`` asks for on ``MODEL.DEVICE``, or None (float32).

    float16 is used on CUDA only: on a CPU it is skipped with a warning (ask for bfloat16 there).
    """
    if not cfg.SOLVER.AMP.ENABLED:
        return None
    precision = cfg.SOLVER.AMP.PRECISION
    if precision not in PRECISIONS:
        raise ValueError(
            f"SOLVER.AMP.PRECISION must be one of {sorted(PRECISIONS)}, got {precision!r}"
        )
    if precision == "float16" and not cfg.MODEL.DEVICE.startswith("cuda"):
        logging.getLogger(__name__).warning(
            "SOLVER.AMP.ENABLED with float16 needs CUDA; training in float32 on "
            f"{cfg.MODEL.DEVICE} (set SOLVER.AMP.PRECISION bfloat16 for mixed precision on a CPU)"
        )
        return None
    return PRECISIONS[precision]


def non_finite_terms(loss_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """Names of the loss terms of ``loss_dict`` that are NaN or infinite, in order."""
    return [name for name, value in loss_dict.items() if not torch.isfinite(value).all()]


class FiniteLossCheck:
    """Step mixin: raise ``FloatingPointError`` naming the non-finite loss terms and the iteration,
    on every rank, after the backward pass and before the optimizer step (so that the weights are
    not updated with them). Hooks :meth:`SimpleTrainer._write_metrics`, which runs there."""

    def _write_metrics(self, loss_dict: Mapping[str, torch.Tensor], *args, **kwargs) -> None:
        local = non_finite_terms(loss_dict)
        every_rank = sorted(set().union(*comm.all_gather(local)))
        if every_rank:
            described = [
                (
                    f"{name} = {float(loss_dict[name].detach().float().sum())}"
                    if name in local
                    else f"{name} (on another rank)"
                )
                for name in every_rank
            ]
            raise FloatingPointError(
                f"non-finite loss term at iteration {get_event_storage().iter}: "
                f"{', '.join(described)}; the weights were not updated with it (lower "
                "SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS)"
            )
        super()._write_metrics(loss_dict, *args, **kwargs)


class FiniteSimpleTrainer(FiniteLossCheck, SimpleTrainer):
    """detectron2's :class:`SimpleTrainer` step that stops at a non-finite loss term."""


class MixedPrecisionTrainer(FiniteLossCheck, SimpleTrainer):
    """:class:`SimpleTrainer` whose forward pass runs under ``torch.autocast(dtype)``.

    float16 scales the loss with a ``GradScaler`` (whose state is checkpointed); bfloat16 needs
    no scaling.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        *,
        dtype: torch.dtype,
        device_type: str,
    ) -> None:
        super().__init__(model, data_loader, optimizer)
        self.dtype = dtype
        self.device_type = device_type
        use_scaler = dtype == torch.float16
        self.grad_scaler = torch.amp.GradScaler(device_type) if use_scaler else None

    def run_step(self) -> None:
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(self.device_type, dtype=self.dtype):
            loss_dict = self.model(data)
        losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            losses.backward()
            self._write_metrics(loss_dict, data_time)
            self.optimizer.step()
        else:
            self.grad_scaler.scale(losses).backward()
            self._write_metrics(loss_dict, data_time)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

    def state_dict(self) -> Dict[str, Any]:
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
