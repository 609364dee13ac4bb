"""``SeMaskFPN``: SeMask backbone + the Semantic-FPN head with the semantic-prior loss."""

from typing import Dict, List, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess

from .inference import normalize_and_pad, output_size, pad_sem_seg, prior_outputs


@META_ARCH_REGISTRY.register()
class SeMaskFPN(SemanticSegmentor):
    """A detectron2 ``SemanticSegmentor`` whose head (``SeMaskFPNHead``) also trains the priors.

    Inputs as :class:`SeMaskMaskFormer`. Training returns ``loss_sem_seg`` and ``loss_cate``;
    inference returns per image ``sem_seg`` [K, height, width] logits and, with ``return_prior``,
    ``sem_prior`` and ``stage_priors``. Inference runs image by image without padding, as the
    published mmseg code's whole-image inference does (so its outputs equal the published ones).
    """

    @configurable
    def __init__(self, *, return_prior: bool = False, **kwargs) -> None:
        """``return_prior``: also return the prior maps; ``kwargs`` as ``SemanticSegmentor``."""
        super().__init__(**kwargs)
        self.return_prior = return_prior

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict:
        ret = super().from_config(cfg)
        ret["return_prior"] = cfg.MODEL.MASK_FORMER.TEST.RETURN_PRIOR
        return ret

    def forward(
        self, batched_inputs: List[Dict]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, object]]]:
        """Training: ``loss_sem_seg`` (and ``loss_cate``). Inference: per image ``sem_seg``
        [K, height, width] (and ``sem_prior``, ``stage_priors`` with ``return_prior``)."""
        if not self.training:
            return [self.inference_one(x) for x in batched_inputs]
        images = normalize_and_pad(
            batched_inputs, self.pixel_mean, self.pixel_std, self.backbone.size_divisibility
        )
        features = self.backbone(images.tensor)
        targets = pad_sem_seg(batched_inputs, images, self.sem_seg_head.ignore_value)
        return self.sem_seg_head(features, targets)[1]

    def inference_one(self, input_per_image: Dict) -> Dict[str, object]:
        """One image as the published SeMask-FPN infers it: the backbone runs on the unpadded
        normalised image and the logits are resized (bilinear) from stride 4 to its size."""
        images = normalize_and_pad([input_per_image], self.pixel_mean, self.pixel_std, 0)
        image_size = images.image_sizes[0]
        features = self.backbone(images.tensor)
        logits = F.interpolate(
            self.sem_seg_head.layers(features),
            size=image_size,
            mode="bilinear",
            align_corners=False,
        )
        height, width = output_size(input_per_image, image_size)
        result = {"sem_seg": sem_seg_postprocess(logits[0], image_size, height, width)}
        if self.return_prior:
            sem_prior = self.sem_seg_head.prior_map(features)
            shapes = self.backbone.output_shape()
            result.update(
                prior_outputs(sem_prior[0], features, shapes, 0, image_size, height, width)
            )
        return result
