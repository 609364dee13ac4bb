"""What the benchmark measures: a model with an inference call and a training step, built the
same way in the measuring process and in each fresh memory-measuring process."""

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .inputs import synthetic_samples

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Settings:
    """One benchmark case: where and how the models run."""

    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False
    channels_last: bool = False
    threads: int = 1

    @property
    def label(self) -> str:
        return (
            f"{self.device}/{self.dtype}/threads={self.threads}"
            f"{'/compile' if self.compile else ''}{'/channels_last' if self.channels_last else ''}"
        )

    def autocast(self) -> ContextManager:
        """Autocast to ``dtype`` on ``device``; nothing for float32."""
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=DTYPES[self.dtype])


@dataclass(frozen=True)
class SubjectSpec:
    """A picklable recipe for a :class:`Subject`: ``kind`` "semask" (``config_file`` + ``opts``)
    or "hf" (transformers' Mask2Former Swin-T peer), at ``batch`` x ``height`` x ``width``."""

    kind: str
    batch: int
    height: int
    width: int
    config_file: str = ""
    opts: Tuple[str, ...] = ()
    num_classes: int = 150


@dataclass
class Subject:
    """``infer()`` runs one batch in eval mode without gradients; ``train_step()`` one forward,
    backward and optimizer step on the synthetic training batch. ``scores_fn`` maps what
    ``infer_fn`` returns to [B, K, H, W] semantic scores, or None where it has none."""

    name: str
    model: nn.Module
    infer_fn: Callable[[], object]
    loss_fn: Callable[[], torch.Tensor]
    optimizer: torch.optim.Optimizer
    settings: Settings
    scores_fn: Callable[[object], Optional[torch.Tensor]]
    scaler: Optional[torch.amp.GradScaler] = field(default=None)

    def infer(self) -> object:
        self.model.eval()
        with torch.inference_mode(), self.settings.autocast():
            return self.infer_fn()

    def train_step(self) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.settings.autocast():
            loss = self.loss_fn()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())


def prepare(model: nn.Module, settings: Settings, compiled: List[str]) -> nn.Module:
    """Move ``model`` to the device (channels-last if asked) and ``torch.compile`` the named
    submodules when ``settings.compile`` (the detectron2 wrapper takes lists of dicts, so the
    tensor-in tensor-out parts are compiled, not the wrapper)."""
    model = model.to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile:
        for name in compiled:
            setattr(model, name, torch.compile(getattr(model, name)))
    return model


def grad_scaler(settings: Settings) -> Optional[torch.amp.GradScaler]:
    """A loss scaler for float16 training on CUDA, as mixed-precision training uses."""
    if settings.dtype == "float16" and settings.device.startswith("cuda"):
        return torch.amp.GradScaler("cuda")
    return None


def stacked_semantic_scores(outputs: Sequence[Dict[str, torch.Tensor]]) -> Optional[torch.Tensor]:
    """The [B, K, H, W] stack of the outputs' ``sem_seg``; None if an output has none (an
    instance-only config)."""
    if not all("sem_seg" in output for output in outputs):
        return None
    return torch.stack([output["sem_seg"] for output in outputs])


def semask_subject(spec: SubjectSpec, settings: Settings) -> Subject:
    """This project's model from ``spec.config_file`` + ``opts`` (``MODEL.WEIGHTS`` loaded by the
    predictor's strict loader), its configured optimizer, and mapper-shaped synthetic inputs."""
    from ..engine import build_cfg, build_optimizer
    from ..predictor import SeMaskPredictor

    cfg = build_cfg(spec.config_file, [*spec.opts, "MODEL.DEVICE", settings.device])
    model = prepare(SeMaskPredictor(cfg).model, settings, ["backbone", "sem_seg_head"])
    samples = synthetic_samples(
        batch=spec.batch,
        height=spec.height,
        width=spec.width,
        num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
    )
    eval_inputs = [{k: v for k, v in s.items() if k != "sem_seg"} for s in samples]

    def loss() -> torch.Tensor:
        return sum(model(samples).values())

    return Subject(
        name="semask",
        model=model,
        infer_fn=lambda: model(eval_inputs),
        loss_fn=loss,
        optimizer=build_optimizer(cfg, model),
        settings=settings,
        scores_fn=stacked_semantic_scores,
        scaler=grad_scaler(settings),
    )


def build_subject(spec: SubjectSpec, settings: Settings) -> Subject:
    """The :class:`Subject` that ``spec`` describes, on ``settings``; seeded, so every process
    builds the same weights. On CUDA, float32 is IEEE float32 (no TF32 matmuls or convolutions),
    so that float32 compares like for like with the CPU."""
    torch.manual_seed(0)
    if settings.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if spec.kind == "semask":
        return semask_subject(spec, settings)
    if spec.kind == "hf":
        from .hf_peer import hf_subject

        return hf_subject(spec, settings)
    raise ValueError(f"unknown benchmark subject kind {spec.kind!r} (expected 'semask' or 'hf')")


def subject_info(subject: Subject) -> Dict[str, object]:
    """Parameter count of the measured model."""
    return {"parameters": sum(p.numel() for p in subject.model.parameters())}
