"""``SeMaskFPN``: SeMask backbone + the Semantic-FPN head with the semantic-prior loss."""

from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.structures import ImageList

from ...upsample import postprocess_to_output
from ..onednn_linear import ONEDNN, route_linears
from ..semantic_prior import prior_outputs, prior_settings
from .inference import normalize_and_pad, output_size, pad_sem_seg
from .sliding_window import SlidingWindow


@META_ARCH_REGISTRY.register()
class SeMaskFPN(SemanticSegmentor):
    """A detectron2 ``SemanticSegmentor`` whose head (``SeMaskFPNHead``) also trains the priors.

    Inputs as :class:`SeMaskMaskFormer`. Training returns ``loss_sem_seg`` and ``loss_cate``;
    inference returns per image ``sem_seg`` [K, height, width] logits and, with ``return_prior``,
    ``sem_prior`` and ``stage_priors``. Inference runs image by image without padding, as the
    published mmseg code's whole-image inference does (so its outputs equal the published ones),
    or, with ``sliding_window``, window by window as its ``slide`` mode does.
    """

    @configurable
    def __init__(
        self,
        *,
        return_prior: bool = False,
        sliding_window: Optional[SlidingWindow] = None,
        cpu_linear: str = ONEDNN,
        **kwargs,
    ) -> None:
        """``return_prior``: also return the prior maps; ``sliding_window``: infer ``sem_seg``
        window by window (``TEST.SLIDE``); ``cpu_linear``: :func:`route_linears`; ``kwargs`` as
        ``SemanticSegmentor``."""
        super().__init__(**kwargs)
        self.return_prior = return_prior
        self.sliding_window = sliding_window
        route_linears(self, cpu_linear)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict:
        ret = super().from_config(cfg)
        ret["return_prior"] = prior_settings(cfg).return_prior
        ret["sliding_window"] = SlidingWindow.from_config(cfg)
        ret["cpu_linear"] = cfg.MODEL.CPU_LINEAR
        return ret

    def forward(
        self, batched_inputs: List[Dict]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, object]]]:
        """Training: ``loss_sem_seg`` (and ``loss_cate``). Inference: per image ``sem_seg``
        [K, height, width] (and ``sem_prior``, ``stage_priors`` with ``return_prior``)."""
        if not self.training:
            if self.sliding_window is not None:
                return self.sliding_window(batched_inputs, self.crop_scores)
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
        logits, features = self._logits(images)
        height, width = output_size(input_per_image, image_size)
        result = {"sem_seg": postprocess_to_output(logits[0], image_size, height, width)}
        if self.return_prior:
            sem_prior = self.sem_seg_head.prior_map(features)
            shapes = self.backbone.output_shape()
            result.update(
                prior_outputs(sem_prior[0], features, shapes, 0, image_size, height, width)
            )
        return result

    def crop_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """Logits [B, K, h, w] of same-size crops [B, 3, h, w] (unnormalised), each inferred as
        :meth:`inference_one` infers an image."""
        inputs = [{"image": crop} for crop in crops]
        images = normalize_and_pad(inputs, self.pixel_mean, self.pixel_std, 0)
        return self._logits(images)[0]

    def _logits(self, images: ImageList) -> Tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """Head logits [B, K, H, W] (float32 under autocast too) resized (bilinear) from stride 4
        to the unpadded batch ``images`` [B, 3, H, W], and the backbone features."""
        features = self.backbone(images.tensor)
        logits = F.interpolate(
            self.sem_seg_head.layers(features).float(),
            size=images.tensor.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        return logits, features
