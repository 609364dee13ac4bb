"""SeMask's semantic layer: class-affinity attention that also emits per-stage prior logits."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from .sdpa import sdpa_unfused_on_cpu
from .windows import pad_to_multiple, window_partition, window_reverse


class SemanticAttention(nn.Module):
    """Single-head attention whose queries and keys are class logits (docs/DESIGN.md section 1).

    ``S = mlp_cls_q(t)`` are the prior logits; ``out = gamma * mlp_res(softmax(S Kc^T) V) + t``.
    No scaling of the affinity logits.
    """

    def __init__(
        self, *, dim: int, num_classes: int, proj_drop: float = 0.1, use_sdpa: bool = True
    ) -> None:
        super().__init__()
        self.use_sdpa = use_sdpa
        self.mlp_cls_q = nn.Linear(dim, num_classes)
        self.mlp_cls_k = nn.Linear(dim, num_classes)
        self.mlp_v = nn.Linear(dim, dim)
        self.mlp_res = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal Linear weights (std 0.02), zero biases, ``gamma`` 0.

        ``mlp_res`` is deliberately non-zero: with it at zero (the published Detectron2
        initialisation) ``gamma``, ``mlp_res``, ``mlp_cls_k`` and ``mlp_v`` never get gradient.
        """
        for linear in (self.mlp_cls_q, self.mlp_cls_k, self.mlp_v, self.mlp_res):
            trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(self.gamma)

    def forward(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``t`` [B, N, C] -> (tokens [B, N, C], class logits [B, N, K])."""
        cls_q = self.mlp_cls_q(t)
        cls_k = self.mlp_cls_k(t)
        v = self.mlp_v(t)
        if self.use_sdpa and not sdpa_unfused_on_cpu(cls_q, v):
            attended = F.scaled_dot_product_attention(cls_q, cls_k, v, scale=1.0)
        else:
            attended = torch.softmax(cls_q @ cls_k.transpose(-2, -1), dim=-1) @ v
        out = self.gamma * self.proj_drop(self.mlp_res(attended)) + t
        return out, cls_q


class SemanticLayer(nn.Module):
    """LayerNorm + ``num_blocks`` SemanticAttention blocks (``class_injection``).

    With ``window_size`` the tokens are zero-padded to a multiple of it and attended per window
    (no shift, no mask); with ``None`` attention is global over the stage.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_classes: int,
        num_blocks: int,
        window_size: Optional[int],
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"SemanticLayer needs num_blocks >= 1, got {num_blocks}")
        if window_size is not None and window_size < 1:
            raise ValueError(
                f"SemanticLayer: window_size must be >= 1 (or None: global), got {window_size}"
            )
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.class_injection = nn.ModuleList(
            SemanticAttention(dim=dim, num_classes=num_classes, use_sdpa=use_sdpa)
            for _ in range(num_blocks)
        )

    def _attend(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        t, cls = self.class_injection[0](t)
        for block in self.class_injection[1:]:
            t, cls = block(t)
        return t, cls

    def forward(self, x: torch.Tensor, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, H*W, C] -> (tokens [B, H*W, C], prior logits [B, K, H, W])."""
        b, n, c = x.shape
        t = self.norm1(x)
        if self.window_size is None:
            t, cls = self._attend(t)
        else:
            grid = pad_to_multiple(t.view(b, h, w, c), self.window_size)
            size = (grid.shape[1], grid.shape[2])
            t, cls = self._attend(window_partition(grid, self.window_size))
            t = window_reverse(t, self.window_size, size)[:, :h, :w].reshape(b, n, c)
            cls = window_reverse(cls, self.window_size, size)[:, :h, :w].reshape(b, n, -1)
        prior = cls.transpose(1, 2).reshape(b, -1, h, w)
        return t, prior
