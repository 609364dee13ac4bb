"""Padding and window partitioning of channels-last token maps (Swin and semantic layer)."""

from typing import Tuple

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``x`` [B, H, W, C] at the bottom and right so that H and W are multiples."""
    pad_h = (multiple - x.shape[1] % multiple) % multiple
    pad_w = (multiple - x.shape[2] % multiple) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Split ``x`` [B, H, W, C] (H, W multiples of the window) into [B * nW, window**2, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, size: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nW, window**2, C] -> [B, H, W, C]."""
    h, w = size
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)
