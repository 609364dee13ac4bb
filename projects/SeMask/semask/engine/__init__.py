"""Training and evaluation: the SeMask trainer, its optimizer, training steps, config checks and
launch."""

from .amp import FiniteSimpleTrainer, MixedPrecisionTrainer, amp_dtype
from .launch import launch
from .optim import build_optimizer, build_param_groups, with_full_model_clipping
from .trainer import Trainer, build_cfg, setup_cfg
from .validation import ConfigError, validate_config

__all__ = [
    "ConfigError",
    "FiniteSimpleTrainer",
    "MixedPrecisionTrainer",
    "Trainer",
    "amp_dtype",
    "build_cfg",
    "build_optimizer",
    "build_param_groups",
    "launch",
    "setup_cfg",
    "validate_config",
    "with_full_model_clipping",
]
