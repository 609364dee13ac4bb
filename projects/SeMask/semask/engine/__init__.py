"""Training and evaluation: the SeMask trainer, its optimizer, mixed precision and launch."""

from .amp import MixedPrecisionTrainer, amp_dtype
from .launch import launch
from .optim import build_optimizer, build_param_groups, with_full_model_clipping
from .trainer import Trainer, build_cfg, setup_cfg

__all__ = [
    "MixedPrecisionTrainer",
    "Trainer",
    "amp_dtype",
    "build_cfg",
    "build_optimizer",
    "build_param_groups",
    "launch",
    "setup_cfg",
    "with_full_model_clipping",
]
