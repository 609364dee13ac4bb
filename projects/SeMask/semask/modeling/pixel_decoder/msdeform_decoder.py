"""Mask2Former's pixel decoder: a deformable encoder over res3-res5 plus an FPN step to res2."""

import math
from typing import Dict, List, Sequence, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn

from ..transformer_decoder.position_encoding import PositionEmbeddingSine
from .msdeform_encoder import MSDeformAttnTransformerEncoderOnly
from .registry import NUM_DECODER_LEVELS, PIXEL_DECODER_REGISTRY, check_feature_sizes


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable-attention encoder over the coarse levels, then lateral FPN steps down to
    ``common_stride``.

    Each FPN step fuses a lateral ``adapter_k`` (1x1 conv + norm) of a fine backbone map with
    the upsampled coarser output (:meth:`fuse`, overridable) and refines it with ``layer_k``
    (3x3 conv + norm + ReLU). Subclasses change only the fusion (MSFaPN then aligns the sum to
    the lateral map).
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
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)

        finest_encoded = min(spec.stride for _, spec in encoder_inputs)
        self.num_fpn_levels = int(round(math.log2(finest_encoded) - math.log2(common_stride)))
        fpn_inputs = by_stride[: self.num_fpn_levels]
        if self.num_fpn_levels < 0 or len(fpn_inputs) < self.num_fpn_levels:
            raise ValueError(
                f"COMMON_STRIDE {common_stride} needs {self.num_fpn_levels} inputs finer than "
                f"stride {finest_encoded}, got {[name for name, _ in fpn_inputs]}"
            )
        use_bias = norm == ""
        for index, (_, spec) in enumerate(fpn_inputs, start=1):
            adapter = Conv2d(
                spec.channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim)
            )
            layer = Conv2d(
                conv_dim,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(adapter)
            weight_init.c2_xavier_fill(layer)
            self.add_module(f"adapter_{index}", adapter)
            self.add_module(f"layer_{index}", layer)
            self.build_fusion(index, conv_dim)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            # the official decoder takes its heads from the transformer decoder's setting
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            # the official decoder fixes this width; MASK_FORMER.DIM_FEEDFORWARD is the decoder's
            "transformer_dim_feedforward": 1024,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            "transformer_in_features": head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": head.COMMON_STRIDE,
        }

    def build_fusion(self, index: int, conv_dim: int) -> None:
        """Create the modules that :meth:`fuse` of FPN step ``index`` needs (none here)."""

    def fuse(self, index: int, lateral: Tensor, coarse: Tensor) -> Tensor:
        """Combine the lateral map [B, C, h, w] of FPN step ``index`` with the coarser output."""
        return lateral + F.interpolate(
            coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=False
        )

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """``features``: backbone maps by name. Returns ``mask_features`` [B, MASK_DIM, H/4, W/4],
        the coarsest encoder output [B, C, H/32, W/32] and the 3 coarsest outputs (coarsest
        first). Runs in float32 even under autocast, as the official decoder does."""
        check_feature_sizes(features, self.in_features, type(self).__name__)
        device_type = features[self.in_features[0]].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_float32(features)

    def _forward_float32(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        srcs, pos = [], []
        for proj, name in zip(self.input_proj, reversed(self.transformer_in_features)):
            x = features[name].float()
            srcs.append(proj(x))
            pos.append(self.pe_layer(x))
        outputs, _ = self.transformer(srcs, pos)
        for index in range(self.num_fpn_levels, 0, -1):
            x = features[self.in_features[index - 1]].float()
            lateral = getattr(self, f"adapter_{index}")(x)
            fused = self.fuse(index, lateral, outputs[-1])
            outputs.append(getattr(self, f"layer_{index}")(fused))
        return self.mask_features(outputs[-1]), outputs[0], outputs[:NUM_DECODER_LEVELS]

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)
