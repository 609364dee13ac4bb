"""Training and evaluation: the SeMask trainer, its optimizer, training steps, the run's config
(construction and checks) and launch."""

from .amp import FiniteSimpleTrainer, MixedPrecisionTrainer, amp_dtype
from .launch import launch
from .optim import build_optimizer, build_param_groups, with_full_model_clipping
from .setup import build_cfg, override_pairs, setup_cfg
from .trainer import Trainer
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
    "override_pairs",
    "setup_cfg",
    "validate_config",
    "with_full_model_clipping",
]
