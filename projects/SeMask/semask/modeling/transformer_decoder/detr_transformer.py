"""DETR's encoder-decoder transformer (used by MaskFormer), with the official parameter names."""

import copy
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .layers import attention_block, ffn_block, xavier_init_matrices


class _DETRLayer(nn.Module):
    """The sub-layers DETR's encoder and decoder layers share, under the official flat names:
    ``self_attn``, the FFN (``linear1``, ``dropout``, ``linear2``) and a ``norm{i}`` and
    ``dropout{i}`` for each of the ``num_residuals`` residual branches."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float,
        normalize_before: bool,
        num_residuals: int,
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        for i in range(1, num_residuals + 1):
            self.add_module(f"norm{i}", nn.LayerNorm(d_model))
        for i in range(1, num_residuals + 1):
            self.add_module(f"dropout{i}", nn.Dropout(dropout))
        self.normalize_before = normalize_before


class TransformerEncoderLayer(_DETRLayer):
    """Self-attention + FFN over [S, B, C] tokens (post-norm, or pre-norm)."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, normalize_before: bool
    ) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, normalize_before, 2)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        """``src``, ``pos`` [S, B, C]. Returns [S, B, C]."""
        src = attention_block(
            self.self_attn,
            self.norm1,
            self.dropout1,
            src,
            query_pos=pos,
            normalize_before=self.normalize_before,
        )
        return ffn_block(
            self.linear1,
            self.linear2,
            self.norm2,
            self.dropout,
            self.dropout2,
            src,
            normalize_before=self.normalize_before,
        )


class TransformerDecoderLayer(_DETRLayer):
    """Self-attention on the queries, cross-attention (``multihead_attn``) to the memory, FFN."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, normalize_before: bool
    ) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, normalize_before, 3)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        """``tgt``, ``query_pos`` [Q, B, C]; ``memory``, ``pos`` [S, B, C]. Returns [Q, B, C]."""
        tgt = attention_block(
            self.self_attn,
            self.norm1,
            self.dropout1,
            tgt,
            query_pos=query_pos,
            normalize_before=self.normalize_before,
        )
        tgt = attention_block(
            self.multihead_attn,
            self.norm2,
            self.dropout2,
            tgt,
            memory,
            pos=pos,
            query_pos=query_pos,
            normalize_before=self.normalize_before,
        )
        return ffn_block(
            self.linear1,
            self.linear2,
            self.norm3,
            self.dropout,
            self.dropout3,
            tgt,
            normalize_before=self.normalize_before,
        )


class _Stack(nn.Module):
    """``num_layers`` copies of a layer (``layers``) and an optional final ``norm``."""

    def __init__(self, layer: nn.Module, num_layers: int, norm: Optional[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm


class Transformer(nn.Module):
    """DETR transformer. ``forward`` returns the normalised decoder output of every layer
    [num_decoder_layers, B, Q, C] (only the last one unless ``return_intermediate_dec``) and the
    encoder memory [B, C, H, W]."""

    def __init__(
        self,
        *,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
        return_intermediate_dec: bool = False,
    ) -> None:
        super().__init__()
        sizes = (d_model, nhead, dim_feedforward, dropout, normalize_before)
        self.encoder = _Stack(
            TransformerEncoderLayer(*sizes),
            num_encoder_layers,
            nn.LayerNorm(d_model) if normalize_before else None,
        )
        self.decoder = _Stack(
            TransformerDecoderLayer(*sizes), num_decoder_layers, nn.LayerNorm(d_model)
        )
        self.d_model = d_model
        self.return_intermediate_dec = return_intermediate_dec
        xavier_init_matrices(self)

    def forward(self, src: Tensor, query_embed: Tensor, pos_embed: Tensor) -> Tuple[Tensor, Tensor]:
        """``src``, ``pos_embed`` [B, C, H, W]; ``query_embed`` [Q, C]."""
        batch, channels, height, width = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, batch, 1)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, pos_embed)
        if self.encoder.norm is not None:
            memory = self.encoder.norm(memory)
        output = torch.zeros_like(query_pos)
        intermediate = []
        for layer in self.decoder.layers:
            output = layer(output, memory, pos_embed, query_pos)
            intermediate.append(self.decoder.norm(output))
        hs = torch.stack(intermediate if self.return_intermediate_dec else intermediate[-1:])
        return hs.transpose(1, 2), memory.permute(1, 2, 0).view(batch, channels, height, width)
