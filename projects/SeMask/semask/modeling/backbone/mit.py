"""SeMask Mix Transformer (SegFormer's MiT-B0..B5) backbone, ``D2SeMaskMiT``.

Parameter names follow the SegFormer ImageNet checkpoints (``patch_embed{i}``, ``block{i}``,
``norm{i}``, i = 1..4) plus ``semantic_layer{i}``, applied after each stage's blocks and before
its ``norm{i}`` (docs/DESIGN.md section 5).
"""

from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import BACKBONE_REGISTRY, ShapeSpec
from timm.layers import DropPath
from torch import nn

from ..semantic_prior import STAGE_NAMES, prior_name
from .common import DEFAULT_WINDOWED_STAGES, SeMaskBackbone, check_backbone_input

# Published sizes (all with NUM_HEADS [1, 2, 5, 8] and SR_RATIOS [8, 4, 2, 1]).
MIT_SIZES = {
    "b0": {"embed_dims": (32, 64, 160, 256), "depths": (2, 2, 2, 2)},
    "b1": {"embed_dims": (64, 128, 320, 512), "depths": (2, 2, 2, 2)},
    "b2": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 6, 3)},
    "b3": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 18, 3)},
    "b4": {"embed_dims": (64, 128, 320, 512), "depths": (3, 8, 27, 3)},
    "b5": {"embed_dims": (64, 128, 320, 512), "depths": (3, 6, 40, 3)},
}
PATCH_KERNELS = (7, 3, 3, 3)
PATCH_STRIDES = (4, 2, 2, 2)
BlockNorm = partial(nn.LayerNorm, eps=1e-6)


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlapping kernels, then LayerNorm: [B, C, H, W] -> tokens."""

    def __init__(self, *, kernel: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """[B, C, H, W] -> ([B, H'*W', D], H', W')."""
        x = self.proj(x)
        h, w = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a ``sr_ratio``-strided reduction."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MiT width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.use_sdpa = use_sdpa
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, H*W, C]."""
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.num_heads, -1).transpose(1, 2)
        source = x
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            source = self.norm(reduced.flatten(2).transpose(1, 2))
        k, v = (
            self.kv(source)
            .view(b, -1, 2, self.num_heads, c // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        drop = self.attn_drop if self.training else 0.0
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        else:
            attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
            out = F.dropout(attn, drop) @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class DWConv(nn.Module):
    """3x3 depth-wise convolution on tokens laid out as an H x W map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, H*W, C]."""
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 -> depth-wise 3x3 conv -> GELU -> fc2 (the conv gives MiT its positional cue)."""

    def __init__(self, *, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, H*W, C]."""
        x = self.drop(self.act(self.dwconv(self.fc1(x), h, w)))
        return self.drop(self.fc2(x))


class MiTBlock(nn.Module):
    """Pre-norm efficient self-attention and Mix-FFN, each with a residual."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = BlockNorm(dim)
        self.attn = EfficientSelfAttention(
            dim=dim,
            num_heads=num_heads,
            sr_ratio=sr_ratio,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
            use_sdpa=use_sdpa,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = BlockNorm(dim)
        self.mlp = MixFFN(dim=dim, hidden=int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, H*W, C]."""
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


@BACKBONE_REGISTRY.register()
class D2SeMaskMiT(SeMaskBackbone):
    """SeMask Mix Transformer: stage ``i`` is ``patch_embed{i}``, ``block{i}``, the semantic layer
    ``semantic_layer{i}`` and ``norm{i}``; outputs as :class:`SeMaskBackbone` declares them."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        out_features: Sequence[str] = STAGE_NAMES,
        sem_window_size: int = 7,
        num_sem_blocks: int = 1,
        use_sdpa: bool = True,
        windowed_stages: Sequence[int] = DEFAULT_WINDOWED_STAGES,
    ) -> None:
        for name, values in (
            ("EMBED_DIMS", embed_dims),
            ("DEPTHS", depths),
            ("NUM_HEADS", num_heads),
            ("SR_RATIOS", sr_ratios),
        ):
            if len(values) != 4:
                raise ValueError(f"MODEL.MIT.{name} needs 4 stages, got {list(values)}")
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            channels=embed_dims,
            out_features=out_features,
            sem_window_size=sem_window_size,
            num_sem_blocks=num_sem_blocks,
            use_sdpa=use_sdpa,
            windowed_stages=windowed_stages,
        )
        self.embed_dims = list(embed_dims)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        previous = in_chans
        for i, dim in enumerate(self.embed_dims):
            stage = i + 1
            self.add_module(
                f"patch_embed{stage}",
                OverlapPatchEmbed(
                    kernel=PATCH_KERNELS[i],
                    stride=PATCH_STRIDES[i],
                    in_chans=previous,
                    embed_dim=dim,
                ),
            )
            first = sum(depths[:i])
            self.add_module(
                f"block{stage}",
                nn.ModuleList(
                    MiTBlock(
                        dim=dim,
                        num_heads=num_heads[i],
                        sr_ratio=sr_ratios[i],
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=rates[first + j],
                        use_sdpa=use_sdpa,
                    )
                    for j in range(depths[i])
                ),
            )
            if self.has_priors:
                self.add_module(f"semantic_layer{stage}", self.semantic_layer(i, dim))
            self.add_module(f"norm{stage}", BlockNorm(dim))
            previous = dim
        self.init_weights(conv=True)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Optional[ShapeSpec] = None) -> dict:
        m = cfg.MODEL.MIT
        return {
            **cls.shared_config(cfg, "MODEL.MIT", input_shape),
            "embed_dims": m.EMBED_DIMS,
            "depths": m.DEPTHS,
            "num_heads": m.NUM_HEADS,
            "sr_ratios": m.SR_RATIOS,
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """[B, 3, H, W] -> {"res2".."res5": [B, C_i, H_i, W_i], "prior_res2".."prior_res5"}."""
        check_backbone_input(x, self.in_chans, PATCH_STRIDES[0])
        outputs = {}
        for i, name in enumerate(STAGE_NAMES):
            stage = i + 1
            tokens, h, w = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                tokens = block(tokens, h, w)
            if self.has_priors:
                tokens, outputs[prior_name(name)] = getattr(self, f"semantic_layer{stage}")(
                    tokens, h, w
                )
            tokens = getattr(self, f"norm{stage}")(tokens)
            x = tokens.transpose(1, 2).reshape(-1, self.embed_dims[i], h, w)
            if name in self._out_features:
                outputs[name] = x
        return {k: v.contiguous() for k, v in outputs.items()}
