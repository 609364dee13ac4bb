"""MaskFormer's transformer decoder: DETR queries on one feature map, masks from ``mask_embed``."""

from typing import Dict

from detectron2.config import CfgNode, configurable
from torch import Tensor, nn

from .detr_transformer import Transformer
from .layers import MLP, input_projection, set_aux_outputs
from .position_encoding import PositionEmbeddingSine
from .query_masks import mask_logits
from .registry import TRANSFORMER_DECODER_REGISTRY, shared_decoder_config


@TRANSFORMER_DECODER_REGISTRY.register()
class StandardTransformerDecoder(nn.Module):
    """DETR encoder-decoder on one map (``TRANSFORMER_IN_FEATURE``); each decoder layer's queries
    give class logits (``class_embed``) and mask logits (``mask_embed`` . ``mask_features``).

    Args:
        in_channels: channels of the input map.
        mask_classification: predict class logits.
        num_classes: K; logits have K + 1 columns.
        hidden_dim, num_queries, nheads, dropout, dim_feedforward: transformer sizes.
        enc_layers, dec_layers: encoder and decoder depth.
        pre_norm: LayerNorm before each sub-layer.
        deep_supervision: also return every earlier layer's prediction as ``aux_outputs``.
        mask_dim: channels of ``mask_features``.
        enforce_input_project: project the input even when ``in_channels == hidden_dim``.
    """

    @configurable
    def __init__(
        self,
        in_channels: int,
        mask_classification: bool = True,
        *,
        num_classes: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dropout: float,
        dim_feedforward: int,
        enc_layers: int,
        dec_layers: int,
        pre_norm: bool,
        deep_supervision: bool,
        mask_dim: int,
        enforce_input_project: bool,
    ) -> None:
        super().__init__()
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(
            d_model=hidden_dim,
            nhead=nheads,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            normalize_before=pre_norm,
            return_intermediate_dec=deep_supervision,
        )
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = input_projection(in_channels, hidden_dim, enforce_input_project)
        self.aux_loss = deep_supervision
        if mask_classification:
            self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int, mask_classification: bool) -> dict:
        mask_former = cfg.MODEL.MASK_FORMER
        return {
            **shared_decoder_config(cfg, in_channels, mask_classification),
            "dropout": mask_former.DROPOUT,
            "enc_layers": mask_former.ENC_LAYERS,
            "dec_layers": mask_former.DEC_LAYERS,
            "deep_supervision": mask_former.DEEP_SUPERVISION,
        }

    def forward(self, x: Tensor, mask_features: Tensor) -> Dict[str, object]:
        """``x`` [B, C, h, w]; ``mask_features`` [B, mask_dim, H, W]. Returns ``pred_logits``
        [B, Q, K + 1], ``pred_masks`` [B, Q, H, W] and, with deep supervision, ``aux_outputs``."""
        pos = self.pe_layer(x)
        hs, _ = self.transformer(self.input_proj(x), self.query_embed.weight, pos)
        logits = self.class_embed(hs) if self.mask_classification else None
        masks = mask_logits(self.mask_embed(hs).unbind(0), mask_features)
        out = {
            "pred_logits": logits[-1] if logits is not None else None,
            "pred_masks": masks[-1],
        }
        if self.aux_loss:
            out["aux_outputs"] = set_aux_outputs(logits, masks)
        return out
