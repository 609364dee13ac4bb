"""MaskFormer's FPN pixel decoder."""

from typing import Dict, List, Tuple

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn

from .registry import NUM_DECODER_LEVELS, PIXEL_DECODER_REGISTRY, check_feature_sizes


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
    """Top-down FPN over all inputs: ``layer_N`` (3x3 conv + norm + ReLU) on the coarsest map,
    then for each finer map a lateral ``adapter_k`` (1x1 conv + norm) fused with the upsampled
    coarser output (:meth:`fuse`, overridable) and refined by ``layer_k``; ``mask_features`` is a
    3x3 conv on the finest output.
    """

    @configurable
    def __init__(
        self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int, norm: str
    ) -> None:
        super().__init__()
        by_stride = sorted(input_shape.items(), key=lambda item: item[1].stride)
        if not by_stride:
            raise ValueError("BasePixelDecoder: no input features (check SEM_SEG_HEAD.IN_FEATURES)")
        self.in_features = [name for name, _ in by_stride]
        use_bias = norm == ""
        coarsest = len(by_stride)
        for index, (_, spec) in enumerate(by_stride, start=1):
            layer = Conv2d(
                spec.channels if index == coarsest else conv_dim,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(layer)
            if index < coarsest:
                adapter = Conv2d(
                    spec.channels,
                    conv_dim,
                    kernel_size=1,
                    bias=use_bias,
                    norm=get_norm(norm, conv_dim),
                )
                weight_init.c2_xavier_fill(adapter)
                self.add_module(f"adapter_{index}", adapter)
            self.add_module(f"layer_{index}", layer)
            if index < coarsest:
                self.build_fusion(index, conv_dim)
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)
        weight_init.c2_xavier_fill(self.mask_features)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
        }

    def build_fusion(self, index: int, conv_dim: int) -> None:
        """Create the modules that :meth:`fuse` of lateral step ``index`` needs (none here)."""

    def fuse(self, index: int, lateral: Tensor, coarse: Tensor) -> Tensor:
        """Combine the lateral map [B, C, h, w] of step ``index`` with the coarser output."""
        return lateral + F.interpolate(coarse, size=lateral.shape[-2:], mode="nearest")

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, None, List[Tensor]]:
        """``features``: backbone maps by name. Returns ``mask_features`` [B, MASK_DIM, H/s, W/s]
        (s the finest stride), no encoder features, and the 3 coarsest outputs (coarsest first)."""
        check_feature_sizes(features, self.in_features, type(self).__name__)
        coarsest = len(self.in_features)
        y = getattr(self, f"layer_{coarsest}")(features[self.in_features[-1]])
        outputs = [y]
        for index in range(coarsest - 1, 0, -1):
            lateral = getattr(self, f"adapter_{index}")(features[self.in_features[index - 1]])
            y = getattr(self, f"layer_{index}")(self.fuse(index, lateral, y))
            outputs.append(y)
        return self.mask_features(y), None, outputs[:NUM_DECODER_LEVELS]

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, None, List[Tensor]]:
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)
