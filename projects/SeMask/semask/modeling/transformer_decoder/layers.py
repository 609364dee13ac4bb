"""Building blocks shared by the transformer decoders: attention and feed-forward sub-layers with
residual + LayerNorm (post-norm or pre-norm), a small MLP, the input projection and the
deep-supervision outputs."""

from typing import Dict, List, Optional, Sequence

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import Tensor, nn


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


def xavier_init_matrices(module: nn.Module) -> None:
    """Xavier-uniform initialisation of every parameter of ``module`` with 2 or more dims."""
    for param in module.parameters():
        if param.dim() > 1:
            nn.init.xavier_uniform_(param)


def attention_block(
    attention: nn.MultiheadAttention,
    norm: nn.LayerNorm,
    dropout: nn.Module,
    tgt: Tensor,
    memory: Optional[Tensor] = None,
    *,
    attn_mask: Optional[Tensor] = None,
    pos: Optional[Tensor] = None,
    query_pos: Optional[Tensor] = None,
    normalize_before: bool = False,
) -> Tensor:
    """Residual attention with LayerNorm after the residual (or before the attention).

    ``tgt`` [Q, B, C]; ``memory`` [S, B, C], or None for self-attention on (normalised) ``tgt``
    with ``query_pos`` as its position. Positions are added to queries and keys, not values.
    Returns [Q, B, C].
    """
    query = norm(tgt) if normalize_before else tgt
    if memory is None:
        memory, pos = query, query_pos
    attended = attention(
        _with_pos(query, query_pos),
        _with_pos(memory, pos),
        value=memory,
        attn_mask=attn_mask,
        need_weights=False,
    )[0]
    tgt = tgt + dropout(attended)
    return tgt if normalize_before else norm(tgt)


def ffn_block(
    linear1: nn.Linear,
    linear2: nn.Linear,
    norm: nn.LayerNorm,
    inner_dropout: nn.Module,
    residual_dropout: nn.Module,
    tgt: Tensor,
    *,
    normalize_before: bool = False,
) -> Tensor:
    """Residual ReLU feed-forward with LayerNorm after the residual (or before the MLP)."""
    hidden = norm(tgt) if normalize_before else tgt
    tgt = tgt + residual_dropout(linear2(inner_dropout(F.relu(linear1(hidden)))))
    return tgt if normalize_before else norm(tgt)


class AttentionLayer(nn.Module):
    """Residual multi-head attention sub-layer on sequence-first tensors [L, B, C].

    Registered as ``self_attn`` (self-attention) or ``multihead_attn`` (cross-attention) to keep
    the official parameter names; ``norm`` is applied after the residual, or before the attention
    with ``normalize_before``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        *,
        dropout: float = 0.0,
        normalize_before: bool = False,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.attn_name = "multihead_attn" if cross else "self_attn"
        self.add_module(self.attn_name, nn.MultiheadAttention(d_model, nhead, dropout=dropout))
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        xavier_init_matrices(self)

    def forward(
        self,
        tgt: Tensor,
        memory: Optional[Tensor] = None,
        *,
        attn_mask: Optional[Tensor] = None,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        """``tgt`` [Q, B, C]; ``memory`` [S, B, C] (None: self-attention on ``tgt``, where
        ``pos`` defaults to ``query_pos``). Returns [Q, B, C]."""
        return attention_block(
            getattr(self, self.attn_name),
            self.norm,
            self.dropout,
            tgt,
            memory,
            attn_mask=attn_mask,
            pos=pos,
            query_pos=query_pos,
            normalize_before=self.normalize_before,
        )


class FFNLayer(nn.Module):
    """Residual two-layer ReLU feed-forward sub-layer with LayerNorm (post- or pre-norm)."""

    def __init__(
        self,
        d_model: int,
        dim_feedforward: int,
        *,
        dropout: float = 0.0,
        normalize_before: bool = False,
    ) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        xavier_init_matrices(self)

    def forward(self, tgt: Tensor) -> Tensor:
        """[L, B, C] -> [L, B, C]."""
        return ffn_block(
            self.linear1,
            self.linear2,
            self.norm,
            self.dropout,
            self.dropout,
            tgt,
            normalize_before=self.normalize_before,
        )


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (stored as ``layers``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        """[..., input_dim] -> [..., output_dim]."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return x


def input_projection(in_channels: int, hidden_dim: int, enforce: bool) -> nn.Module:
    """A c2-Xavier 1x1 conv from ``in_channels`` to ``hidden_dim``; an identity (an empty
    ``nn.Sequential``, as in the official checkpoints) when they match and ``enforce`` is off."""
    if in_channels == hidden_dim and not enforce:
        return nn.Sequential()
    proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
    weight_init.c2_xavier_fill(proj)
    return proj


def set_aux_outputs(
    logits: Optional[Sequence[Tensor]], masks: Sequence[Tensor]
) -> List[Dict[str, Tensor]]:
    """Every prediction but the last as ``{"pred_logits", "pred_masks"}``, in order; a key is
    left out where its value is None (no class logits; masks not computed at inference)."""
    logits = logits if logits is not None else [None] * len(masks)
    return [
        {k: v for k, v in (("pred_logits", c), ("pred_masks", m)) if v is not None}
        for c, m in zip(logits[:-1], masks[:-1])
    ]
