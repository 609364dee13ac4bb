"""SeMask meta-architectures; importing registers them (and the SeMask-FPN head)."""

from .semask_fpn import SeMaskFPN
from .semask_maskformer import SeMaskMaskFormer, build_criterion
from .tta import SemanticSegmentorWithTTA

__all__ = ["SeMaskFPN", "SeMaskMaskFormer", "SemanticSegmentorWithTTA", "build_criterion"]
