"""What the FPN-style pixel decoders share: conv + norm blocks and their lateral FPN steps."""

from typing import Callable, Dict, List, Optional, Tuple

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn


def conv_norm(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: str = "",
    activation: Optional[Callable[[Tensor], Tensor]] = None,
) -> Conv2d:
    """ "Same"-padded Conv2d + ``norm`` (detectron2 name; "" for none, then with a bias) +
    ``activation``, c2-Xavier initialised."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=norm == "",
        norm=get_norm(norm, out_channels),
        activation=activation,
    )
    weight_init.c2_xavier_fill(conv)
    return conv


class LateralFPN(nn.Module):
    """Base of the FPN-style pixel decoders.

    Lateral step ``k`` fuses ``adapter_k`` (1x1 conv + norm) of a finer backbone map with the
    coarser output (:meth:`fuse`: nearest upsampling and sum, overridable) and refines the result
    with ``layer_k`` (3x3 conv + norm + ReLU). Subclasses that fuse differently create what their
    :meth:`fuse` needs in :meth:`build_fusion`. Subclasses define ``forward_features``.
    """

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
        }

    def add_lateral_step(self, index: int, in_channels: int, conv_dim: int, norm: str) -> None:
        """Create ``adapter_{index}``, ``layer_{index}`` and the step's fusion modules."""
        self.add_module(f"adapter_{index}", conv_norm(in_channels, conv_dim, 1, norm))
        self.add_module(f"layer_{index}", conv_norm(conv_dim, conv_dim, 3, norm, F.relu))
        self.build_fusion(index, conv_dim)

    def build_fusion(self, index: int, conv_dim: int) -> None:
        """Create the modules that :meth:`fuse` of lateral step ``index`` needs (none here)."""

    def fuse(self, index: int, lateral: Tensor, coarse: Tensor) -> Tensor:
        """Combine the lateral map [B, C, h, w] of step ``index`` with the coarser output."""
        return lateral + F.interpolate(coarse, size=lateral.shape[-2:], mode="nearest")

    def lateral_step(self, index: int, feature: Tensor, coarse: Tensor) -> Tensor:
        """Step ``index``: backbone map [B, C_in, h, w] + coarser output -> [B, conv_dim, h, w]."""
        lateral = getattr(self, f"adapter_{index}")(feature)
        return getattr(self, f"layer_{index}")(self.fuse(index, lateral, coarse))

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor], List[Tensor]]:
        """The subclass's ``forward_features``: (mask_features, encoder output or None, maps)."""
        return self.forward_features(features)
