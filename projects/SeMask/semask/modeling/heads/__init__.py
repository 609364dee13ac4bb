"""SeMask heads; importing this package registers ``BranchMaskFormerHead`` and ``SeMaskFPNHead``."""

from .branch_head import BranchMaskFormerHead
from .semantic_fpn_head import SeMaskFPNHead

__all__ = ["BranchMaskFormerHead", "SeMaskFPNHead"]
