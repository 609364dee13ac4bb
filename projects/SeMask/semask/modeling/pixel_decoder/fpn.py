"""MaskFormer's FPN pixel decoder."""

from typing import Dict, List, Tuple

import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import Tensor

from .lateral import LateralFPN, conv_norm
from .registry import NUM_DECODER_LEVELS, PIXEL_DECODER_REGISTRY, check_feature_sizes


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(LateralFPN):
    """Top-down FPN over all inputs: ``layer_N`` (3x3 conv + norm + ReLU) on the coarsest map,
    then a lateral step (:class:`LateralFPN`) for each finer map; ``mask_features`` is a 3x3 conv
    on the finest output.
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
        for index, (_, spec) in enumerate(by_stride[:-1], start=1):
            self.add_lateral_step(index, spec.channels, conv_dim, norm)
        coarsest = len(by_stride)
        self.add_module(
            f"layer_{coarsest}",
            conv_norm(by_stride[-1][1].channels, conv_dim, 3, norm, activation=F.relu),
        )
        self.mask_dim = mask_dim
        self.mask_features = conv_norm(conv_dim, mask_dim, 3)

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, None, List[Tensor]]:
        """``features``: backbone maps by name. Returns ``mask_features`` [B, MASK_DIM, H/s, W/s]
        (s the finest stride), no encoder features, and the 3 coarsest outputs (coarsest first)."""
        check_feature_sizes(features, self.in_features, type(self).__name__)
        coarsest = len(self.in_features)
        y = getattr(self, f"layer_{coarsest}")(features[self.in_features[-1]])
        outputs = [y]
        for index in range(coarsest - 1, 0, -1):
            y = self.lateral_step(index, features[self.in_features[index - 1]], y)
            outputs.append(y)
        return self.mask_features(y), None, outputs[:NUM_DECODER_LEVELS]
