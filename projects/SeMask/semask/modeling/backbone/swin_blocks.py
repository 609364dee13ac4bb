"""Swin Transformer building blocks with the official Detectron2 padding and parameter names."""

from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from ..onednn_linear import linear_activation
from .sdpa import sdpa_unfused_on_cpu
from .windows import pad_to_multiple, window_partition, window_reverse


def relative_position_index(window_size: int) -> torch.Tensor:
    """[w*w, w*w] int64 index into the [(2w-1)**2, heads] relative position bias table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    )
    coords = coords.flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def shifted_window_mask(
    height: int, width: int, window_size: int, shift: int, device: torch.device
) -> torch.Tensor:
    """[nW, w*w, w*w] additive mask (0 / -100) separating regions rolled together by the shift.

    ``height``/``width`` are the window-padded sizes.
    """
    region = torch.zeros(1, height, width, 1, device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for ws in bounds:
            region[:, hs, ws, :] = label
            label += 1
    windows = window_partition(region, window_size).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding; the image is zero-padded to a multiple of the patch."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int, patch_norm: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C, ceil(H/p), ceil(W/p)]."""
        p = self.patch_size
        x = F.pad(x, (0, (p - x.shape[3] % p) % p, 0, (p - x.shape[2] % p) % p))
        x = self.proj(x)
        if self.norm is not None:
            h, w = x.shape[2:]
            x = (
                self.norm(x.flatten(2).transpose(1, 2))
                .transpose(1, 2)
                .reshape(-1, x.shape[1], h, w)
            )
        return x


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias."""

    def __init__(
        self,
        *,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.use_sdpa = use_sdpa
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` [B*nW, N, C], ``mask`` [nW, N, N] or None -> [B*nW, N, C]."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        # 4-D, [1 or B*nW, heads, N, N]: a 3-D mask sends SDPA to its unfused math kernel
        bias = bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:  # [nW, N, N] -> [B*nW, heads, N, N]
            num_windows = mask.shape[0]
            bias = bias + mask.unsqueeze(1)
            bias = bias.expand(bw // num_windows, -1, -1, -1, -1).reshape(bw, self.num_heads, n, n)
        drop = self.attn_drop if self.training else 0.0
        if self.use_sdpa and not sdpa_unfused_on_cpu(q, v, bias):
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=self.scale
            )
        else:
            attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1) + bias, dim=-1)
            out = F.dropout(attn, drop) @ v
        out = out.transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(out))


class GeluMlp(Mlp):
    """timm's ``Mlp`` (GELU; parameters ``fc1``, ``fc2``) with ``fc1`` and the GELU as one
    :func:`linear_activation`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., C] -> [..., C]."""
        hidden = self.drop1(linear_activation(self.fc1, x, "gelu"))
        return self.drop2(self.fc2(self.norm(hidden)))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention + MLP, each pre-norm with a residual."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: Optional[float],
        drop: float,
        attn_drop: float,
        drop_path: float,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim=dim,
            window_size=window_size,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
            use_sdpa=use_sdpa,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = GeluMlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=drop)

    def forward(
        self, x: torch.Tensor, h: int, w: int, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """``x`` [B, H*W, C]; ``mask`` is the shifted-window mask (used when shifting)."""
        b, n, c = x.shape
        ws, shift = self.window_size, self.shift_size
        grid = pad_to_multiple(self.norm1(x).view(b, h, w, c), ws)
        size = (grid.shape[1], grid.shape[2])
        if shift:
            grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn(window_partition(grid, ws), mask if shift else None)
        grid = window_reverse(windows, ws, size)
        if shift:
            grid = torch.roll(grid, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(grid[:, :h, :w].reshape(b, n, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (odd sizes zero-padded) -> LayerNorm -> linear 4C -> 2C."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, ceil(H/2)*ceil(W/2), 2C]."""
        b, _, c = x.shape
        grid = x.view(b, h, w, c)
        if h % 2 or w % 2:
            grid = F.pad(grid, (0, 0, 0, w % 2, 0, h % 2))
        parts = (grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2])
        merged = torch.cat(parts, dim=-1).view(b, -1, 4 * c)
        return self.reduction(self.norm(merged))
