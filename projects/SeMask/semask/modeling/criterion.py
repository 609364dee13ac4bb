"""Mask2Former's set losses, with pluggable extra losses such as SeMask's ``loss_cate``
(:class:`semask.modeling.semantic_prior.CriterionPriorLoss`)."""

from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from detectron2.utils.comm import get_world_size
from fvcore.nn import sigmoid_focal_loss
from torch import nn

from .matcher import HungarianMatcher
from .pixel_loss import cross_entropy_sum

Outputs = Dict[str, torch.Tensor]
Targets = List[Dict[str, torch.Tensor]]
ExtraLoss = Callable[[Outputs, Targets], torch.Tensor]


def ignore_aware_cross_entropy(
    sem_pred: torch.Tensor,
    sem_seg: torch.Tensor,
    ignore_value: int = 255,
    align_corners: Optional[bool] = None,
) -> torch.Tensor:
    """Per-pixel cross-entropy, mean over labelled pixels.

    Args:
        sem_pred: [B, K, H, W] logits at the label size, or, with ``align_corners`` given,
            [B, K, h, w] logits that are resized bilinearly to it (inside the loss, see
            :func:`semask.modeling.pixel_loss.cross_entropy_sum`).
        sem_seg: [B, H, W] int64 labels, ``ignore_value`` = unlabelled.
    Returns:
        scalar; 0 (still connected to the graph) when no pixel is labelled.
    """
    if align_corners is None and sem_pred.shape[-2:] != sem_seg.shape[-2:]:
        raise ValueError(
            f"ignore_aware_cross_entropy: sem_pred size {tuple(sem_pred.shape[-2:])} differs "
            f"from sem_seg size {tuple(sem_seg.shape[-2:])}"
        )
    total = cross_entropy_sum(sem_pred.float(), sem_seg, ignore_value, bool(align_corners))
    return total / (sem_seg != ignore_value).sum().clamp(min=1)


def sigmoid_ce_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Point-wise BCE, mean over points, summed over masks, divided by ``num_masks``. [M, P]."""
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return loss.mean(1).sum() / num_masks


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sigmoid focal loss (alpha 0.25, gamma 2), mean over pixels, summed over masks, divided by
    ``num_masks``. [M, P]."""
    loss = sigmoid_focal_loss(logits, labels, alpha=0.25, gamma=2.0, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss (smoothing 1) summed over masks, divided by ``num_masks``. [M, P]."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * labels).sum(-1)
    denominator = probs.sum(-1) + labels.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def _uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Points whose logit is closest to 0 are the most uncertain. [M, 1, P] -> [M, 1, P]."""
    return -logits.abs()


def matched_target_points(
    targets: Targets, indices: List[Tuple[torch.Tensor, torch.Tensor]], coords: torch.Tensor
) -> torch.Tensor:
    """Each matched target mask sampled at the points of its pair: ``point_sample`` of the
    float masks ``t["masks"][j]`` [M, H, W] (images in turn) at ``coords`` [M, P, 2] -> [M, P],
    without gathering the full-size masks: every image's masks are sampled where they lie, each
    at the points of the pair it belongs to (a target matched to no query at dummy points, then
    dropped)."""
    labels, start = [], 0
    for target, (_, matched) in zip(targets, indices):
        masks = target["masks"]
        by_target = coords.new_zeros(len(masks), *coords.shape[1:])
        by_target[matched] = coords[start : start + len(matched)]
        start += len(matched)
        sampled = point_sample(masks[:, None], by_target, align_corners=False)
        labels.append(sampled[matched, 0])
    return torch.cat(labels)


class SetCriterion(nn.Module):
    """Hungarian-matched classification + mask losses with deep supervision.

    ``forward`` returns the losses already multiplied by ``weight_dict``: ``loss_ce``,
    ``loss_mask``, ``loss_dice`` on the final output, ``loss_ce_{i}``, ``loss_mask_{i}``,
    ``loss_dice_{i}`` on ``aux_outputs[i]``, and every ``extra_losses`` entry on the final output.
    The mask losses follow the matcher's ``mask_loss``: BCE on importance-sampled points
    (Mask2Former) or focal loss on the full-resolution masks (MaskFormer); dice with both.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: Mapping[str, float],
        eos_coef: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        extra_losses: Optional[Mapping[str, ExtraLoss]] = None,
        deep_supervision: bool = True,
    ) -> None:
        """
        Args:
            num_classes: K; class index K is "no object".
            weight_dict: weight of every loss key produced (a missing key is an error).
            eos_coef: classification weight of the "no object" class.
            num_points, oversample_ratio, importance_sample_ratio: point sampling of mask losses.
            extra_losses: name -> fn(outputs, targets) giving a scalar, applied to the final output.
            deep_supervision: also apply the set losses to ``aux_outputs`` (else ignore them).
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.extra_losses = dict(extra_losses or {})
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(
        self, outputs: Outputs, targets: Targets, indices: List[Tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """Weighted CE of all queries; unmatched queries are labelled "no object"."""
        logits = outputs["pred_logits"].float()
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        batch_idx, src_idx = self._query_index(indices)
        matched = [t["labels"][j] for t, (_, j) in zip(targets, indices)]
        target_classes[batch_idx, src_idx] = torch.cat(matched).to(logits.device)
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)

    def loss_masks(
        self,
        outputs: Outputs,
        targets: Targets,
        indices: List[Tuple[torch.Tensor, torch.Tensor]],
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Mask and dice losses of the matched masks."""
        pred_masks = outputs["pred_masks"]
        batch_idx, src_idx = self._query_index(indices)
        if len(src_idx) == 0:
            zero = pred_masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        src = pred_masks[batch_idx, src_idx][:, None]
        if self.matcher.mask_loss == "focal":
            tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)])
            tgt = tgt[:, None].to(src.dtype)
            src = F.interpolate(src, size=tgt.shape[-2:], mode="bilinear", align_corners=False)
            src, tgt = src.flatten(1), tgt.flatten(1)
            return {
                "loss_mask": focal_loss(src, tgt, num_masks),
                "loss_dice": dice_loss(src, tgt, num_masks),
            }
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src,
                _uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )
            point_labels = matched_target_points(targets, indices, coords)
        point_logits = point_sample(src, coords, align_corners=False).squeeze(1)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    @staticmethod
    def _query_index(
        indices: List[Tuple[torch.Tensor, torch.Tensor]],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    def _set_losses(
        self, outputs: Outputs, targets: Targets, num_masks: float, layer: str
    ) -> Outputs:
        indices = self.matcher(outputs, targets, layer=layer)
        losses = {"loss_ce": self.loss_labels(outputs, targets, indices)}
        losses.update(self.loss_masks(outputs, targets, indices, num_masks))
        return losses

    def forward(self, outputs: Outputs, targets: Targets) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: ``pred_logits`` [B, Q, K+1], ``pred_masks`` [B, Q, h, w], optional
                ``aux_outputs`` (list of such dicts) and whatever ``extra_losses`` read.
            targets: per image ``labels`` [N] int64, ``masks`` [N, H, W] (plus extra-loss keys).
        Returns:
            the weighted losses.
        """
        num_masks = sum(len(t["labels"]) for t in targets)
        num_masks_t = torch.as_tensor(
            [num_masks], dtype=torch.float, device=outputs["pred_logits"].device
        )
        if get_world_size() > 1:
            torch.distributed.all_reduce(num_masks_t)
        num_masks = max(num_masks_t.item() / get_world_size(), 1.0)

        # every decoder layer samples the same target masks: convert them once, not per layer
        mask_type = outputs["pred_masks"].dtype
        targets = [{**t, "masks": t["masks"].to(mask_type)} for t in targets]
        losses = self._set_losses(outputs, targets, num_masks, "the final output")
        aux_outputs = outputs.get("aux_outputs", []) if self.deep_supervision else []
        for i, aux in enumerate(aux_outputs):
            aux_losses = self._set_losses(aux, targets, num_masks, f"aux_outputs[{i}]")
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        for name, fn in self.extra_losses.items():
            losses[name] = fn(outputs, targets)
        missing = sorted(set(losses) - set(self.weight_dict))
        if missing:
            raise KeyError(f"SetCriterion: no weight in weight_dict for losses {missing}")
        return {k: v * self.weight_dict[k] for k, v in losses.items()}
