"""Multi-scale + flip test-time augmentation for semantic segmentation (TEST.AUG.*)."""

from typing import Dict, List, Optional

import torch
from detectron2.config import CfgNode
from detectron2.modeling import DatasetMapperTTA
from fvcore.transforms.transform import HFlipTransform
from torch import nn


class SemanticSegmentorWithTTA(nn.Module):
    """Average a semantic model's ``sem_seg`` over resized (and flipped) copies of each image.

    Each copy is made by :class:`DatasetMapperTTA` (shortest edge to each of ``TEST.AUG.MIN_SIZES``
    capped at ``TEST.AUG.MAX_SIZE``, plus a horizontal flip of each when ``TEST.AUG.FLIP``); the
    model returns each copy's scores at the input's ``height`` x ``width``, flipped copies are
    flipped back, and the scores are averaged.
    """

    def __init__(
        self, cfg: CfgNode, model: nn.Module, tta_mapper: Optional[DatasetMapperTTA] = None
    ) -> None:
        super().__init__()
        self.model = model
        self.tta_mapper = tta_mapper if tta_mapper is not None else DatasetMapperTTA(cfg)

    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        """Inputs as the wrapped model (``image`` uint8 [3, H, W]); ``sem_seg`` per image."""
        if self.model.training:
            raise RuntimeError("SemanticSegmentorWithTTA is for inference: call model.eval()")
        return [self._inference_one(x) for x in batched_inputs]

    def _inference_one(self, input_dict: Dict) -> Dict[str, torch.Tensor]:
        height, width = input_dict["image"].shape[-2:]
        input_dict = {
            "image": input_dict["image"],
            "height": input_dict.get("height", height),
            "width": input_dict.get("width", width),
        }
        total = None
        augmented = self.tta_mapper(input_dict)
        for aug in augmented:
            transforms = aug.pop("transforms")
            with torch.no_grad():
                scores = self.model([aug])[0]["sem_seg"]
            if any(isinstance(t, HFlipTransform) for t in transforms.transforms):
                scores = scores.flip(dims=[-1])
            total = scores if total is None else total + scores
        return {"sem_seg": total / len(augmented)}
