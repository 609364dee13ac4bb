"""``SeMaskMaskFormer``: SeMask backbone + mask-classification head (MaskFormer / Mask2Former)."""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import nn

from ...data.targets import padded_instance_targets
from ...upsample import postprocess_to_output
from ..criterion import SetCriterion
from ..matcher import HungarianMatcher
from ..onednn_linear import ONEDNN, route_linears
from ..semantic_prior import CriterionPriorLoss, prior_outputs, prior_settings
from .families import check_buildable
from .inference import (
    instance_inference,
    normalize_and_pad,
    output_size,
    pad_sem_seg,
    panoptic_inference,
    semantic_inference,
)
from .sliding_window import SlidingWindow


def build_criterion(cfg: CfgNode) -> SetCriterion:
    """The Mask2Former set criterion with SeMask's ``loss_cate`` (skipped when
    ``MODEL.SEMASK.CATE_WEIGHT`` is 0)."""
    mf = cfg.MODEL.MASK_FORMER
    cate_weight = prior_settings(cfg).cate_weight
    matcher = HungarianMatcher(
        cost_class=mf.CLASS_WEIGHT,
        cost_mask=mf.MASK_WEIGHT,
        cost_dice=mf.DICE_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS,
        mask_loss=mf.MASK_LOSS,
    )
    main = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
    weight_dict = dict(main)
    if mf.DEEP_SUPERVISION:
        for i in range(mf.DEC_LAYERS - 1):
            weight_dict.update({f"{k}_{i}": v for k, v in main.items()})
    extra_losses = {}
    if cate_weight > 0:
        weight_dict["loss_cate"] = cate_weight
        extra_losses["loss_cate"] = CriterionPriorLoss(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
    return SetCriterion(
        num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=mf.NO_OBJECT_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS,
        oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
        extra_losses=extra_losses,
        deep_supervision=mf.DEEP_SUPERVISION,
    )


@META_ARCH_REGISTRY.register()
class SeMaskMaskFormer(nn.Module):
    """Normalise, pad, run backbone + head; train with the set criterion, infer label maps.

    Inputs are detectron2 dicts: ``image`` uint8 [3, H, W] RGB, optional ``height``/``width``
    (output size), and in training ``instances`` (``gt_classes`` [N], ``gt_masks`` [N, H, W]: the
    mask targets) and ``sem_seg`` int64 [H, W] (``ignore_value`` = unlabelled; the prior loss's
    target), as :class:`semask.data.MaskFormerSemanticDatasetMapper` gives them.
    With ``sliding_window`` (``TEST.SLIDE``), inference returns ``sem_seg`` only, averaged over
    overlapping windows, each inferred as a whole image is. ``cpu_linear`` (``MODEL.CPU_LINEAR``)
    chooses what computes the float32 linear layers on the CPU (:func:`route_linears`).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: SetCriterion,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int,
        ignore_value: int = 255,
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        return_prior: bool = False,
        object_mask_threshold: float = 0.0,
        overlap_threshold: float = 0.0,
        thing_ids: Tuple[int, ...] = (),
        test_topk_per_image: int = 100,
        sem_seg_postprocess_before_inference: bool = False,
        sliding_window: Optional[SlidingWindow] = None,
        cpu_linear: str = ONEDNN,
    ) -> None:
        super().__init__()
        if not (semantic_on or panoptic_on or instance_on):
            raise ValueError("SeMaskMaskFormer: enable at least one of semantic/panoptic/instance")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility
        self.ignore_value = ignore_value
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.return_prior = return_prior
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.thing_ids = frozenset(thing_ids)
        self.test_topk_per_image = test_topk_per_image
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        self.sliding_window = sliding_window
        self.cpu_linear = cpu_linear
        route_linears(self, cpu_linear)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict:
        check_buildable(cfg)
        backbone = build_backbone(cfg)
        test = cfg.MODEL.MASK_FORMER.TEST
        metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]) if cfg.DATASETS.TRAIN else None
        thing_map = getattr(metadata, "thing_dataset_id_to_contiguous_id", {})
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "criterion": build_criterion(cfg),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": max(
                cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY, backbone.size_divisibility
            ),
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "semantic_on": test.SEMANTIC_ON,
            "panoptic_on": test.PANOPTIC_ON,
            "instance_on": test.INSTANCE_ON,
            "return_prior": prior_settings(cfg).return_prior,
            "object_mask_threshold": test.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": test.OVERLAP_THRESHOLD,
            "thing_ids": tuple(thing_map.values()),
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "sem_seg_postprocess_before_inference": test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE,
            "sliding_window": SlidingWindow.from_config(cfg),
            "cpu_linear": cfg.MODEL.CPU_LINEAR,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(
        self, batched_inputs: List[Dict]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, object]]]:
        """Training: dict of weighted losses. Inference: per image a dict with ``sem_seg``
        [K, height, width] (and ``panoptic_seg``, ``instances``, ``sem_prior``, ``stage_priors``
        when enabled; ``sem_seg`` only with ``sliding_window``)."""
        if not self.training and self.sliding_window is not None:
            return self.sliding_window(batched_inputs, self.crop_scores)
        images, features, outputs = self._run(batched_inputs)
        if self.training:
            return self.criterion(outputs, self.prepare_targets(batched_inputs, images))
        return self.inference(batched_inputs, images, features, outputs)

    def _run(
        self, batched_inputs: Sequence[Dict]
    ) -> Tuple[ImageList, Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]:
        """Normalised, padded images; backbone features; head outputs."""
        images = normalize_and_pad(
            batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility
        )
        features = self.backbone(images.tensor)
        return images, features, self.sem_seg_head(features)

    def crop_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """Semantic scores [B, K, h, w] of same-size crops [B, 3, h, w] (unnormalised), each
        inferred as a whole image of that size is."""
        inputs = [{"image": crop} for crop in crops]
        results = self.inference(inputs, *self._run(inputs))
        return torch.stack([result["sem_seg"] for result in results])

    def prepare_targets(
        self, batched_inputs: List[Dict], images: ImageList
    ) -> List[Dict[str, torch.Tensor]]:
        """Per image ``labels`` [N] and ``masks`` [N, Hp, Wp] bool: the input's ``instances``
        (``gt_classes``, ``gt_masks`` zero-padded to the batch), and ``sem_seg`` [Hp, Wp] padded
        with ``ignore_value``.

        Raises KeyError naming the mapper to use if an input has no ``instances``."""
        for i, x in enumerate(batched_inputs):
            if "instances" not in x:
                raise KeyError(
                    f"training input {i} has no 'instances' (gt_classes, gt_masks), the targets "
                    "SeMaskMaskFormer trains on: use INPUT.DATASET_MAPPER_NAME "
                    "'mask_former_semantic' (MaskFormerSemanticDatasetMapper with_masks=True)"
                )
        sem_segs = pad_sem_seg(batched_inputs, images, self.ignore_value)
        padded_size = tuple(sem_segs.shape[-2:])
        targets = []
        for x, image_size, sem_seg in zip(batched_inputs, images.image_sizes, sem_segs):
            labels, masks = padded_instance_targets(
                x["instances"], image_size, padded_size, self.device
            )
            targets.append({"labels": labels, "masks": masks, "sem_seg": sem_seg})
        return targets

    def inference(
        self,
        batched_inputs: List[Dict],
        images: ImageList,
        features: Mapping[str, torch.Tensor],
        outputs: Mapping[str, torch.Tensor],
    ) -> List[Dict[str, object]]:
        """Per image: ``sem_seg`` [K, height, width] scores and the enabled extra outputs, from the
        head's ``pred_logits`` [B, Q, K + 1] and ``pred_masks`` [B, Q, h, w]. Under autocast
        both are taken to float32 first: the outputs are float32, the class softmax and the mask
        resize are float32-exact, and the CPU resizes float32 maps faster than bf16 ones."""
        mask_preds = F.interpolate(
            outputs["pred_masks"].float(),
            size=images.tensor.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        results = []
        for i, (mask_cls, mask_pred) in enumerate(zip(outputs["pred_logits"].float(), mask_preds)):
            image_size = images.image_sizes[i]
            height, width = output_size(batched_inputs[i], image_size)
            result = {}
            if self.sem_seg_postprocess_before_inference or self.panoptic_on or self.instance_on:
                mask_pred = postprocess_to_output(mask_pred, image_size, height, width)
                image_size = (height, width)
            if self.semantic_on:
                scores = semantic_inference(mask_cls, mask_pred, cpu_linear=self.cpu_linear)
                result["sem_seg"] = postprocess_to_output(scores, image_size, height, width)
            if self.panoptic_on:
                result["panoptic_seg"] = panoptic_inference(
                    mask_cls,
                    mask_pred,
                    object_mask_threshold=self.object_mask_threshold,
                    overlap_threshold=self.overlap_threshold,
                    thing_ids=self.thing_ids,
                )
            if self.instance_on:
                result["instances"] = instance_inference(
                    mask_cls,
                    mask_pred,
                    topk=self.test_topk_per_image,
                    thing_ids=self.thing_ids if self.panoptic_on else None,
                )
            if self.return_prior:
                result.update(self._prior_outputs(i, images, features, outputs, height, width))
            results.append(result)
        return results

    def _prior_outputs(
        self,
        i: int,
        images: ImageList,
        features: Mapping[str, torch.Tensor],
        outputs: Mapping[str, torch.Tensor],
        height: int,
        width: int,
    ) -> Dict[str, object]:
        if "sem_pred" not in outputs:
            raise KeyError("MODEL.SEMASK.RETURN_PRIOR needs the head to return 'sem_pred'")
        return prior_outputs(
            outputs["sem_pred"][i],
            features,
            self.backbone.output_shape(),
            i,
            images.image_sizes[i],
            height,
            width,
        )
