"""Mask2Former's pixel decoder: a deformable encoder over res3-res5 plus an FPN step to res2."""

import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import Tensor, nn

from ..transformer_decoder.position_encoding import PositionEmbeddingSine
from .lateral import LateralFPN, conv_norm
from .msdeform_encoder import MSDeformAttnTransformerEncoderOnly
from .registry import NUM_DECODER_LEVELS, PIXEL_DECODER_REGISTRY, check_feature_sizes


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(LateralFPN):
    """Deformable-attention encoder over the coarse levels, then lateral FPN steps
    (:class:`LateralFPN`, bilinear upsampling) down to ``common_stride``; ``mask_features`` is a
    1x1 conv on the finest output.

    Under autocast the decoder runs in float32, as the official one does, unless
    ``follow_autocast``: then its convolutions and linear layers run in the autocast dtype and
    only the deformable sampling (:class:`MSDeformAttn`) stays float32.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_dropout: float,
        transformer_nheads: int,
        transformer_dim_feedforward: int,
        transformer_enc_layers: int,
        transformer_n_points: int,
        conv_dim: int,
        mask_dim: int,
        norm: str,
        transformer_in_features: Sequence[str],
        common_stride: int,
        follow_autocast: bool = False,
    ) -> None:
        super().__init__()
        missing = [name for name in transformer_in_features if name not in input_shape]
        if missing:
            raise ValueError(
                f"DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES {list(transformer_in_features)}: "
                f"{missing} not among the pixel decoder inputs {sorted(input_shape)}"
            )
        by_stride = sorted(input_shape.items(), key=lambda item: item[1].stride)
        self.in_features = [name for name, _ in by_stride]
        self.follow_autocast = follow_autocast
        encoder_inputs = [(k, v) for k, v in by_stride if k in transformer_in_features]
        self.transformer_in_features = [name for name, _ in encoder_inputs]
        num_levels = len(encoder_inputs)
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(spec.channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim)
            )
            for _, spec in reversed(encoder_inputs)
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=num_levels,
            enc_n_points=transformer_n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.mask_dim = mask_dim
        self.mask_features = conv_norm(conv_dim, mask_dim, 1)

        finest_encoded = min(spec.stride for _, spec in encoder_inputs)
        self.num_fpn_levels = int(round(math.log2(finest_encoded) - math.log2(common_stride)))
        fpn_inputs = by_stride[: self.num_fpn_levels]
        if self.num_fpn_levels < 0 or len(fpn_inputs) < self.num_fpn_levels:
            raise ValueError(
                f"COMMON_STRIDE {common_stride} needs {self.num_fpn_levels} inputs finer than "
                f"stride {finest_encoded}, got {[name for name, _ in fpn_inputs]}"
            )
        for index, (_, spec) in enumerate(fpn_inputs, start=1):
            self.add_lateral_step(index, spec.channels, conv_dim, norm)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            **super().from_config(cfg, input_shape),
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            # the official decoder takes its heads from the transformer decoder's setting
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            # the official decoder fixes this width; MASK_FORMER.DIM_FEEDFORWARD is the decoder's
            "transformer_dim_feedforward": 1024,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            "transformer_in_features": head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": head.COMMON_STRIDE,
            "follow_autocast": head.PIXEL_DECODER_AUTOCAST,
        }

    def fuse(self, index: int, lateral: Tensor, coarse: Tensor) -> Tensor:
        """Sum the lateral map [B, C, h, w] of step ``index`` and the bilinearly upsampled
        coarser output."""
        # the encoder's maps are [B, C, H, W] views of token-major memory; the CPU resize of
        # such a channels-last layout copies its output twice, of a contiguous one not at all
        return lateral + F.interpolate(
            coarse.contiguous(), size=lateral.shape[-2:], mode="bilinear", align_corners=False
        )

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """``features``: backbone maps by name. Returns ``mask_features`` [B, MASK_DIM, H/4, W/4],
        the coarsest encoder output [B, C, H/32, W/32] and the 3 coarsest outputs (coarsest
        first). Under autocast: float32 unless ``follow_autocast``."""
        check_feature_sizes(features, self.in_features, type(self).__name__)
        device_type = features[self.in_features[0]].device.type
        if self.follow_autocast:
            return self._forward(features)
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward({name: x.float() for name, x in features.items()})

    def _forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        srcs, pos = [], []
        for proj, name in zip(self.input_proj, reversed(self.transformer_in_features)):
            x = features[name]
            srcs.append(proj(x))
            pos.append(self.pe_layer(x))
        outputs, _ = self.transformer(srcs, pos)
        for index in range(self.num_fpn_levels, 0, -1):
            x = features[self.in_features[index - 1]]
            outputs.append(self.lateral_step(index, x, outputs[-1]))
        return self.mask_features(outputs[-1]), outputs[0], outputs[:NUM_DECODER_LEVELS]
