"""SeMask Swin Transformer backbone ``D2SeMaskSwinTransformer`` and plain ``D2SwinTransformer``."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import BACKBONE_REGISTRY, ShapeSpec
from timm.layers import trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..semantic_prior import STAGE_NAMES, prior_name
from .common import DEFAULT_WINDOWED_STAGES, SeMaskBackbone, check_backbone_input
from .semantic_layer import SemanticLayer
from .swin_blocks import PatchEmbed, PatchMerging, SwinTransformerBlock, shifted_window_mask

# (EMBED_DIM, DEPTHS, NUM_HEADS, WINDOW_SIZE) of the published sizes (docs/DESIGN.md section 1).
SWIN_SIZES = {
    "T": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "window_size": 7},
    "S": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "window_size": 7},
    "B": {
        "embed_dim": 128,
        "depths": (2, 2, 18, 2),
        "num_heads": (4, 8, 16, 32),
        "window_size": 12,
    },
    "L": {
        "embed_dim": 192,
        "depths": (2, 2, 18, 2),
        "num_heads": (6, 12, 24, 48),
        "window_size": 12,
    },
}


class SwinStage(nn.Module):
    """Swin blocks of one stage, its optional semantic layer and the PatchMerging after it."""

    def __init__(
        self,
        *,
        blocks: List[SwinTransformerBlock],
        semantic_layer: Optional[SemanticLayer],
        downsample: Optional[PatchMerging],
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.window_size = blocks[0].window_size
        self.use_checkpoint = use_checkpoint
        self.semantic_layer = semantic_layer
        self.downsample = downsample

    def forward(
        self, x: torch.Tensor, h: int, w: int
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``x`` [B, H*W, C] -> (stage tokens, next-stage tokens or None, prior or None)."""
        ws, mask = self.window_size, None
        if any(block.shift_size for block in self.blocks):
            padded_h, padded_w = -(-h // ws) * ws, -(-w // ws) * ws
            mask = shifted_window_mask(padded_h, padded_w, ws, ws // 2, x.device).to(x.dtype)
        for block in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = checkpoint(block, x, h, w, mask, use_reentrant=False)
            else:
                x = block(x, h, w, mask)
        prior = None
        if self.semantic_layer is not None:
            x, prior = self.semantic_layer(x, h, w)
        x_down = self.downsample(x, h, w) if self.downsample is not None else None
        return x, x_down, prior


@BACKBONE_REGISTRY.register()
class D2SeMaskSwinTransformer(SeMaskBackbone):
    """SeMask Swin Transformer: ``patch_embed``, then stages ``layers[i]`` (Swin blocks, semantic
    layer, PatchMerging) whose outputs are normalised by ``norm{i}``; outputs as
    :class:`SeMaskBackbone` declares them."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        pretrain_img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        ape: bool = False,
        patch_norm: bool = True,
        out_features: Sequence[str] = STAGE_NAMES,
        use_checkpoint: bool = False,
        frozen_stages: int = -1,
        sem_window_size: int = 7,
        num_sem_blocks: int = 1,
        use_sdpa: bool = True,
        windowed_stages: Sequence[int] = DEFAULT_WINDOWED_STAGES,
    ) -> None:
        if window_size < 1:
            raise ValueError(
                f"D2SeMaskSwinTransformer: window_size (MODEL.SWIN.WINDOW_SIZE) must be >= 1, "
                f"got {window_size}"
            )
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(
                f"MODEL.SWIN.DEPTHS and NUM_HEADS need 4 stages, got {list(depths)}, "
                f"{list(num_heads)}"
            )
        num_features = [embed_dim * 2**i for i in range(4)]
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            channels=num_features,
            out_features=out_features,
            sem_window_size=sem_window_size,
            num_sem_blocks=num_sem_blocks,
            use_sdpa=use_sdpa,
            windowed_stages=windowed_stages,
        )
        self.patch_size = patch_size
        self.frozen_stages = frozen_stages
        self.num_features = num_features
        self.patch_embed = PatchEmbed(
            patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, patch_norm=patch_norm
        )
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = self.num_features[i]
            first = sum(depths[:i])
            blocks = [
                SwinTransformerBlock(
                    dim=dim,
                    num_heads=heads,
                    window_size=window_size,
                    shift_size=0 if j % 2 == 0 else window_size // 2,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rates[first + j],
                    use_sdpa=use_sdpa,
                )
                for j in range(depth)
            ]
            self.layers.append(
                SwinStage(
                    blocks=blocks,
                    semantic_layer=self.semantic_layer(i, dim),
                    downsample=PatchMerging(dim=dim) if i < 3 else None,
                    use_checkpoint=use_checkpoint,
                )
            )
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.init_weights()
        self._freeze_stages()

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Optional[ShapeSpec] = None) -> dict:
        s = cfg.MODEL.SWIN
        return {
            **cls.shared_config(cfg, "MODEL.SWIN", input_shape),
            "pretrain_img_size": s.PRETRAIN_IMG_SIZE,
            "patch_size": s.PATCH_SIZE,
            "embed_dim": s.EMBED_DIM,
            "depths": s.DEPTHS,
            "num_heads": s.NUM_HEADS,
            "window_size": s.WINDOW_SIZE,
            "qk_scale": s.QK_SCALE,
            "ape": s.APE,
            "patch_norm": s.PATCH_NORM,
            "use_checkpoint": s.USE_CHECKPOINT,
            "frozen_stages": s.FROZEN_STAGES,
        }

    def _freeze_stages(self) -> None:
        frozen: List[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        if self.frozen_stages >= 1 and self.absolute_pos_embed is not None:
            self.absolute_pos_embed.requires_grad_(False)
        if self.frozen_stages >= 2:
            frozen.extend(self.layers[: self.frozen_stages - 1])
        for module in frozen:
            module.eval()
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> "D2SeMaskSwinTransformer":
        """Switch mode while keeping frozen stages in eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """[B, 3, H, W] -> {"res2".."res5": [B, C_i, H_i, W_i], "prior_res2".."prior_res5"}."""
        check_backbone_input(x, self.in_chans, self.patch_size)
        x = self.patch_embed(x)
        h, w = x.shape[2:]
        if self.absolute_pos_embed is not None:
            pos = F.interpolate(self.absolute_pos_embed, size=(h, w), mode="bicubic")
            x = x + pos
        x = self.pos_drop(x.flatten(2).transpose(1, 2))
        outputs = {}
        for i, (stage, name) in enumerate(zip(self.layers, STAGE_NAMES)):
            x_out, x, prior = stage(x, h, w)
            if name in self._out_features:
                feature = getattr(self, f"norm{i}")(x_out)
                outputs[name] = feature.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2)
            if prior is not None:
                outputs[prior_name(name)] = prior
            h, w = (h + 1) // 2, (w + 1) // 2
        return {k: v.contiguous() for k, v in outputs.items()}


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(D2SeMaskSwinTransformer):
    """Plain Swin (the official baselines' name): SeMask Swin without semantic layers."""

    @configurable
    def __init__(self, *, num_classes: int = 0, num_sem_blocks: int = 0, **kwargs) -> None:
        """Arguments of :class:`D2SeMaskSwinTransformer`; ``num_sem_blocks`` must be 0."""
        if num_sem_blocks != 0:
            raise ValueError(f"D2SwinTransformer has no semantic layers, got {num_sem_blocks=}")
        super().__init__(num_classes=num_classes, num_sem_blocks=0, **kwargs)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Optional[ShapeSpec] = None) -> dict:
        return {**super().from_config(cfg, input_shape), "num_sem_blocks": 0}
