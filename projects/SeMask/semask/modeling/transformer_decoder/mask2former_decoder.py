"""Mask2Former's transformer decoder: masked cross-attention over multi-scale pixel features."""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from torch import Tensor, nn

from .layers import MLP, AttentionLayer, FFNLayer, input_projection, set_aux_outputs
from .position_encoding import PositionEmbeddingSine
from .query_masks import mask_logits
from .registry import TRANSFORMER_DECODER_REGISTRY, shared_decoder_config


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Learnable queries refined by layers of masked cross-attention (to the pixel-decoder
    scales in turn, coarsest first), self-attention and FFN; a prediction (class logits and mask
    logits) is made before the first layer and after every layer, and the mask of each
    prediction restricts the next cross-attention to the pixels it covers.

    Args:
        in_channels: channels of the multi-scale features.
        mask_classification: predict class logits (``class_embed``).
        num_classes: K; logits have K + 1 columns (the last is "no object").
        hidden_dim, num_queries, nheads, dim_feedforward: decoder sizes.
        dec_layers: decoder layers (``MASK_FORMER.DEC_LAYERS - 1``).
        pre_norm: LayerNorm before each sub-layer instead of after.
        mask_dim: channels of ``mask_features``.
        enforce_input_project: project inputs even when ``in_channels == hidden_dim``.
        num_feature_levels: number of scales attended in turn.
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
        dim_feedforward: int,
        dec_layers: int,
        pre_norm: bool,
        mask_dim: int,
        enforce_input_project: bool,
        num_feature_levels: int = 3,
    ) -> None:
        super().__init__()
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.transformer_self_attention_layers = nn.ModuleList(
            AttentionLayer(hidden_dim, nheads, normalize_before=pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            AttentionLayer(hidden_dim, nheads, normalize_before=pre_norm, cross=True)
            for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.num_feature_levels = num_feature_levels
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList(
            input_projection(in_channels, hidden_dim, enforce_input_project)
            for _ in range(num_feature_levels)
        )
        if mask_classification:
            self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int, mask_classification: bool) -> dict:
        if cfg.MODEL.MASK_FORMER.DEC_LAYERS < 1:
            raise ValueError(
                f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1, got {cfg.MODEL.MASK_FORMER.DEC_LAYERS}"
            )
        return {
            **shared_decoder_config(cfg, in_channels, mask_classification),
            # DEC_LAYERS counts the prediction made from the queries before the first layer
            "dec_layers": cfg.MODEL.MASK_FORMER.DEC_LAYERS - 1,
        }

    def forward(self, x: Sequence[Tensor], mask_features: Tensor) -> Dict[str, object]:
        """``x``: ``num_feature_levels`` maps [B, C, H_l, W_l] (coarsest first);
        ``mask_features`` [B, mask_dim, H, W].

        Returns ``pred_logits`` [B, Q, K + 1], ``pred_masks`` [B, Q, H, W] and ``aux_outputs``
        (the ``dec_layers`` earlier predictions, in order; in eval mode without their masks).
        """
        if len(x) != self.num_feature_levels:
            raise ValueError(
                f"MultiScaleMaskedTransformerDecoder expects {self.num_feature_levels} feature "
                f"levels, got {len(x)}"
            )
        srcs, positions, sizes = [], [], []
        for level, feature in enumerate(x):
            sizes.append(feature.shape[-2:])
            positions.append(self.pe_layer(feature).flatten(2).permute(2, 0, 1))
            src = self.input_proj[level](feature).flatten(2)
            srcs.append((src + self.level_embed.weight[level][None, :, None]).permute(2, 0, 1))
        batch = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, batch, 1)

        attention_features = self.features_for_attention(mask_features, sizes)
        logits, embedding, attn_mask = self.forward_prediction_heads(output, attention_features[0])
        all_logits, embeddings = [logits], [embedding]
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # a query whose mask covers nothing attends everywhere instead
            attn_mask[attn_mask.all(-1)] = False
            output = self.transformer_cross_attention_layers[i](
                output,
                srcs[level],
                attn_mask=head_shared_bias(attn_mask, self.num_heads, output.dtype),
                pos=positions[level],
                query_pos=query_pos,
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            logits, embedding, attn_mask = self.forward_prediction_heads(
                output, attention_features[i + 1]
            )
            all_logits.append(logits)
            embeddings.append(embedding)
        if self.training:  # every prediction's masks are trained
            all_masks = mask_logits(embeddings, mask_features)
        else:  # only the last prediction's masks are read
            all_masks = [None] * self.num_layers + mask_logits(embeddings[-1:], mask_features)
        return {
            "pred_logits": all_logits[-1] if self.mask_classification else None,
            "pred_masks": all_masks[-1],
            "aux_outputs": set_aux_outputs(
                all_logits if self.mask_classification else None, all_masks
            ),
        }

    def features_for_attention(
        self, mask_features: Tensor, sizes: Sequence[Tuple[int, int]]
    ) -> List[Optional[Tensor]]:
        """Per prediction (``dec_layers`` + 1, in order), ``mask_features`` resized bilinearly to
        the attention size of the layer that reads its attention mask (one resize per size), or
        None for the last prediction, whose attention mask nothing reads. Without gradient: the
        attention mask is boolean."""
        attn_sizes = [tuple(sizes[j % self.num_feature_levels]) for j in range(self.num_layers)]
        with torch.no_grad():
            # one channels-last copy: the CPU resize of a [B, C, H, W] map makes one per call
            source = mask_features.contiguous(memory_format=torch.channels_last)
            resized = {
                size: F.interpolate(source, size=size, mode="bilinear", align_corners=False)
                for size in set(attn_sizes)
            }
        return [resized[size] for size in attn_sizes] + [None]

    def forward_prediction_heads(
        self, output: Tensor, attention_features: Optional[Tensor]
    ) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor]]:
        """Class logits [B, Q, K + 1], mask embeddings [B, Q, mask_dim] (:func:`mask_logits`
        turns them into masks) and the attention mask [B, Q, h * w] (True = do not attend: mask
        probability below 0.5), None without ``attention_features``.

        ``attention_features`` (:meth:`features_for_attention`) are the mask features at the
        attention size [B, C, h, w]: bilinear resizing is linear, so the mask logits they give
        equal the full mask logits resized, at a fraction of the work.
        """
        decoded = self.decoder_norm(output).transpose(0, 1)
        logits = self.class_embed(decoded) if self.mask_classification else None
        embedding = self.mask_embed(decoded)
        if attention_features is None:
            return logits, embedding, None
        with torch.no_grad():
            small = torch.einsum("bqc,bchw->bqhw", embedding, attention_features)
            attn_mask = small.sigmoid().flatten(2) < 0.5
        return logits, embedding, attn_mask


def head_shared_bias(mask: Tensor, heads: int, dtype: torch.dtype) -> Tensor:
    """[B, Q, S] boolean mask (True = do not attend) -> the additive mask [B * heads, Q, S] (0 or
    -inf, in ``dtype``) that ``nn.MultiheadAttention`` takes, the same for every head: made once
    per image, and for a single image a view instead of a copy per head."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, -math.inf)
    return bias.unsqueeze(1).expand(-1, heads, -1, -1).flatten(0, 1)
