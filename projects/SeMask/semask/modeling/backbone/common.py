"""What the SeMask backbones share: the Backbone base class, input checks, the attention switch."""

import math
from typing import Dict, Optional, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.modeling import Backbone, ShapeSpec
from timm.layers import trunc_normal_
from torch import nn

from ...config import config_value
from ..semantic_prior import STAGE_NAMES, prior_name, prior_settings
from .semantic_layer import SemanticLayer

# Stages whose semantic layer attends in windows in the SeMask-Mask2Former / SeMask-FAPN code.
DEFAULT_WINDOWED_STAGES = (0, 1)


def check_backbone_input(x: torch.Tensor, in_chans: int, min_size: int) -> None:
    """Raise a ValueError unless ``x`` is [B, in_chans, H, W] with B >= 1 and H, W >= min_size."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f"backbone input must be [B, {in_chans}, H, W], got {list(x.shape)}")
    if x.shape[0] == 0 or min(x.shape[2:]) < min_size:
        raise ValueError(
            f"backbone input {list(x.shape)} is too small: batch must be >= 1 and H, W >= "
            f"{min_size} (one patch)"
        )


def declare_outputs(
    out_features: Sequence[str], channels: Sequence[int], num_classes: Optional[int]
) -> Dict[str, ShapeSpec]:
    """ShapeSpecs of res2..res5 (restricted to ``out_features``) and, with priors, prior_res*."""
    unknown = set(out_features) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"OUT_FEATURES {sorted(unknown)} not among {list(STAGE_NAMES)}")
    shapes = {}
    for i, name in enumerate(STAGE_NAMES):
        if name in out_features:
            shapes[name] = ShapeSpec(channels=channels[i], stride=4 * 2**i)
    if num_classes is not None:
        for i, name in enumerate(STAGE_NAMES):
            shapes[prior_name(name)] = ShapeSpec(channels=num_classes, stride=4 * 2**i)
    return shapes


def set_sdpa(model: nn.Module, enabled: bool) -> None:
    """Route every attention of ``model`` through SDPA (True) or plain matmul-softmax (False)."""
    for module in model.modules():
        if hasattr(module, "use_sdpa"):
            module.use_sdpa = enabled


class SeMaskBackbone(Backbone):
    """Base of the SeMask backbones: their detectron2 interface and what they build alike.

    ``forward(x [B, 3, H, W])`` returns ``res2..res5`` ([B, C_i, ceil(H/s_i), ceil(W/s_i)],
    strides s_i = 4..32, restricted to ``out_features``) and, when ``num_sem_blocks > 0``,
    ``prior_res2..prior_res5`` ([B, num_classes, ceil(H/s_i), ceil(W/s_i)] prior logits);
    ``size_divisibility`` is 32. The semantic layers of the stages in ``windowed_stages`` attend
    in windows of ``sem_window_size``; the others attend globally.

    Args:
        channels: C_i of the four stages; the other arguments are the subclasses' own.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        channels: Sequence[int],
        out_features: Sequence[str],
        sem_window_size: int,
        num_sem_blocks: int,
        use_sdpa: bool,
        windowed_stages: Sequence[int] = DEFAULT_WINDOWED_STAGES,
    ) -> None:
        super().__init__()
        if not set(windowed_stages) <= set(range(len(STAGE_NAMES))):
            raise ValueError(
                f"{type(self).__name__}: windowed_stages (MODEL.SEMASK.WINDOWED_STAGES) must be "
                f"stage indices 0..3, got {list(windowed_stages)}"
            )
        if num_sem_blocks > 0 and sem_window_size < 1:
            raise ValueError(
                f"{type(self).__name__}: sem_window_size (SEM_WINDOW_SIZE) must be >= 1, "
                f"got {sem_window_size}"
            )
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_sem_blocks = num_sem_blocks
        self.sem_window_size = sem_window_size
        self.windowed_stages = frozenset(windowed_stages)
        self.has_priors = num_sem_blocks > 0
        self._out_features = list(out_features)
        self._out_feature_shapes = declare_outputs(
            out_features, channels, num_classes if self.has_priors else None
        )
        self._use_sdpa = use_sdpa

    @staticmethod
    def shared_config(
        cfg: CfgNode, section_key: str, input_shape: Optional[ShapeSpec]
    ) -> Dict[str, object]:
        """Constructor arguments read alike from the backbone's ``section_key`` (``"MODEL.SWIN"``
        or ``"MODEL.MIT"``) and, for the semantic layers, :func:`prior_settings`."""
        section = config_value(cfg, section_key)
        prior = prior_settings(cfg, section_key)
        return {
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "in_chans": input_shape.channels if input_shape is not None else 3,
            "mlp_ratio": section.MLP_RATIO,
            "qkv_bias": section.QKV_BIAS,
            "drop_rate": section.DROP_RATE,
            "attn_drop_rate": section.ATTN_DROP_RATE,
            "drop_path_rate": section.DROP_PATH_RATE,
            "out_features": section.OUT_FEATURES,
            "sem_window_size": prior.sem_window_size,
            "num_sem_blocks": prior.num_sem_blocks,
            "windowed_stages": prior.windowed_stages,
        }

    def semantic_layer(self, stage: int, dim: int) -> Optional[SemanticLayer]:
        """The semantic layer of ``stage`` (0..3) at width ``dim``; None without priors."""
        if not self.has_priors:
            return None
        return SemanticLayer(
            dim=dim,
            num_classes=self.num_classes,
            num_blocks=self.num_sem_blocks,
            window_size=self.sem_window_size if stage in self.windowed_stages else None,
            use_sdpa=self._use_sdpa,
        )

    def init_weights(self, *, conv: bool = False) -> None:
        """Truncated-normal (std 0.02) Linear weights, zero biases, unit LayerNorms; with ``conv``
        also fan-out normal Conv2d weights (SegFormer's initialisation of MiT)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif conv and isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (fan_out // module.groups)))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return dict(self._out_feature_shapes)

    @property
    def size_divisibility(self) -> int:
        return 32
