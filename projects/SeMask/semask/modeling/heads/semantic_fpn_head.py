"""SeMask-FPN head: detectron2's Semantic-FPN head plus classifier dropout and the prior loss."""

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from torch import nn

from ..criterion import ignore_aware_cross_entropy
from ..semantic_prior import (
    prior_feature_names,
    prior_loss,
    prior_settings,
    prior_sum,
    semantic_map,
)


@SEM_SEG_HEADS_REGISTRY.register()
class SeMaskFPNHead(SemSegFPNHead):
    """Semantic-FPN on the four stage outputs, as the published SeMask-FPN builds it.

    Per stage: 3x3 conv + norm + ReLU blocks with x2 upsampling down to ``common_stride`` (one
    block at stride 4); the stages are summed, dropped out, and classified by a 1x1 conv. The
    backbone's ``prior_res{i}`` maps are summed and trained with ``loss_cate`` as in every SeMask
    model (:mod:`semask.modeling.semantic_prior`; weight ``cate_weight``,
    ``MODEL.SEMASK.CATE_WEIGHT``).
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        prior_features: Sequence[str],
        dropout: float = 0.1,
        cate_weight: float = 0.4,
        **kwargs,
    ) -> None:
        """
        Args:
            input_shape: the stage features the FPN reads (no priors).
            prior_features: prior map names, finest first (empty: no prior loss).
            dropout: dropout probability before the classifier.
            cate_weight: weight of ``loss_cate``.
            kwargs: as :class:`SemSegFPNHead` (num_classes, conv_dims, common_stride, norm, ...).
        """
        super().__init__(input_shape, **kwargs)
        self.prior_features = list(prior_features)
        self.dropout = nn.Dropout2d(dropout)
        self.cate_weight = cate_weight

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict:
        ret = super().from_config(cfg, input_shape)
        missing = sorted(set(cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES) - set(input_shape))
        if missing:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.IN_FEATURES: backbone has no {missing}")
        ret["prior_features"] = prior_feature_names(input_shape)
        ret["dropout"] = cfg.MODEL.SEM_SEG_HEAD.DROPOUT
        ret["cate_weight"] = prior_settings(cfg).cate_weight
        return ret

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits [B, K, h, w] at the size of the finest stage (stride ``common_stride``). A
        coarser stage whose upsampled map is not that size (odd input sizes) is resized to it
        bilinearly, as the published head does."""
        maps = [head(features[f]) for f, head in zip(self.in_features, self.scale_heads)]
        x = maps[0]
        for y in maps[1:]:
            if y.shape[-2:] != x.shape[-2:]:
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + y
        return self.predictor(self.dropout(x))

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``loss_sem_seg``: CE of the logits upsampled to the label size, mean over labelled
        pixels (0 on an all-ignore batch)."""
        loss = ignore_aware_cross_entropy(
            predictions, targets, self.ignore_value, align_corners=False
        )
        return {"loss_sem_seg": self.loss_weight * loss}

    def prior_map(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Aggregated prior logits [B, K, 4 h, 4 w] (h, w: the finest prior's size)."""
        if not self.prior_features:
            raise ValueError("SeMaskFPNHead: the backbone returns no prior_* maps")
        return semantic_map(features, self.prior_features)

    def forward(
        self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None
    ) -> Tuple[Optional[torch.Tensor], Dict[str, torch.Tensor]]:
        """
        Args:
            features: backbone outputs (stage features and priors).
            targets: [B, H, W] int64 padded labels (training).
        Returns:
            training: (None, ``loss_sem_seg`` and ``loss_cate``); inference: (logits [B, K, H, W]
            at the padded input size, {}).
        """
        x = self.layers(features)
        if not self.training:
            return (
                F.interpolate(
                    x, scale_factor=self.common_stride, mode="bilinear", align_corners=False
                ),
                {},
            )
        if targets is None:
            raise ValueError("SeMaskFPNHead: training needs targets")
        losses = self.losses(x, targets)
        if self.prior_features:
            total = prior_sum(features, self.prior_features)
            losses["loss_cate"] = self.cate_weight * prior_loss(total, targets, self.ignore_value)
        return None, losses
