"""Hungarian matching of mask queries to ground-truth masks (Mask2Former's costs, point-sampled)."""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import point_sample
from detectron2.utils.events import get_event_storage
from scipy.optimize import linear_sum_assignment
from torch import nn

MASK_LOSSES = ("sigmoid_ce", "focal")


def _bce_with_one_and_zero(logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Point-wise BCE of ``logits`` [Q, P] against an all-one and an all-zero target: -log
    sigmoid(x) and x - log sigmoid(x), the values ``binary_cross_entropy_with_logits`` gives,
    from one log-sigmoid and without target tensors."""
    pos = F.logsigmoid(logits).neg_()
    return pos, pos + logits


def _mean_over_points(pos: torch.Tensor, neg: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-point costs for target 1 (``pos``) and 0 (``neg``), [Q, P], averaged over the points
    of every [N, P] binary target: [Q, N]."""
    return (pos @ targets.T + neg @ (1 - targets).T) / pos.shape[1]


def _current_iteration() -> Optional[int]:
    """The iteration of the active detectron2 ``EventStorage``, or None outside training."""
    try:
        return get_event_storage().iter
    except AssertionError:
        return None


def _non_finite_error(
    logits: torch.Tensor, pred_masks: torch.Tensor, image: int, layer: Optional[str]
) -> FloatingPointError:
    """The error for a non-finite cost matrix of ``image``, naming the non-finite predictions."""
    culprits = [
        name
        for name, t in (("pred_logits", logits), ("pred_masks", pred_masks))
        if not torch.isfinite(t).all()
    ] or ["the cost (from finite predictions)"]
    where = f"image {image}" + (f" of {layer}" if layer else "")
    iteration = _current_iteration()
    when = f" at iteration {iteration}" if iteration is not None else ""
    return FloatingPointError(
        f"HungarianMatcher: non-finite {' and '.join(culprits)} in {where}{when}; the model "
        "diverged (lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS)"
    )


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every prediction against every target.

    Args:
        logits: [Q, P] mask logits at P points.
        targets: [N, P] binary targets at the same points.
    Returns:
        [Q, N] costs.
    """
    return _mean_over_points(*_bce_with_one_and_zero(logits), targets)


def pairwise_sigmoid_focal(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Mean sigmoid focal loss of every prediction vs every target: [Q, P], [N, P] -> [Q, N]."""
    probs = logits.sigmoid()
    pos, neg = _bce_with_one_and_zero(logits)
    pos = alpha * (1 - probs) ** gamma * pos
    neg = (1 - alpha) * probs**gamma * neg
    return _mean_over_points(pos, neg, targets)


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (smoothing 1) of every prediction vs every target: [Q, P], [N, P] -> [Q, N]."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising a weighted class + mask + dice cost.

    ``mask_loss="sigmoid_ce"`` (Mask2Former): the mask costs are BCE and dice on ``num_points``
    points drawn uniformly at random, the same for every query and target of an image.
    ``mask_loss="focal"`` (MaskFormer): focal loss and dice on every pixel of the predicted masks'
    grid, the targets resized to it (nearest).
    """

    def __init__(
        self,
        *,
        cost_class: float = 1.0,
        cost_mask: float = 1.0,
        cost_dice: float = 1.0,
        num_points: int = 12544,
        mask_loss: str = "sigmoid_ce",
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_mask and cost_dice are all 0")
        if num_points <= 0:
            raise ValueError(f"HungarianMatcher: num_points must be positive, got {num_points}")
        if mask_loss not in MASK_LOSSES:
            raise ValueError(
                f"HungarianMatcher: mask_loss (MODEL.MASK_FORMER.MASK_LOSS) must be one of "
                f"{MASK_LOSSES}, got {mask_loss!r}"
            )
        self.mask_loss = mask_loss
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: List[Dict[str, torch.Tensor]],
        layer: Optional[str] = None,
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's queries to its targets.

        Args:
            outputs: ``pred_logits`` [B, Q, K+1] and ``pred_masks`` [B, Q, h, w].
            targets: per image, ``labels`` [N] int64 and ``masks`` [N, H, W].
            layer: which decoder output ``outputs`` is, named in errors.
        Returns:
            per image, (query indices [M], target indices [M]) int64 with M = min(Q, N).
        Raises:
            FloatingPointError: a cost is NaN or infinite (never handed to the solver); the
                message names the non-finite predictions, the image, ``layer`` and the iteration.
        """
        indices = []
        for image, (logits, pred_masks, target) in enumerate(
            zip(outputs["pred_logits"], outputs["pred_masks"], targets)
        ):
            labels = target["labels"]
            if labels.numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(logits, pred_masks, labels, target["masks"]).cpu()
            if not torch.isfinite(cost).all():
                raise _non_finite_error(logits, pred_masks, image, layer)
            rows, cols = linear_sum_assignment(cost)
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices

    def cost_matrix(
        self,
        logits: torch.Tensor,
        pred_masks: torch.Tensor,
        labels: torch.Tensor,
        target_masks: torch.Tensor,
    ) -> torch.Tensor:
        """[Q, K+1] logits, [Q, h, w] mask logits, [N] labels, [N, H, W] masks -> [Q, N] cost."""
        cost_class = -logits.float().softmax(-1)[:, labels]
        if self.mask_loss == "focal":
            target_masks = F.interpolate(
                target_masks[:, None].to(pred_masks.dtype), size=pred_masks.shape[-2:]
            )
            pred, target = pred_masks.flatten(1).float(), target_masks.flatten(1).float()
            cost_mask = pairwise_sigmoid_focal(pred, target)
        else:
            pred, target = self._sample_points(pred_masks, target_masks)
            cost_mask = pairwise_sigmoid_ce(pred, target)
        return (
            self.cost_class * cost_class
            + self.cost_mask * cost_mask
            + self.cost_dice * pairwise_dice(pred, target)
        )

    def _sample_points(
        self, pred_masks: torch.Tensor, target_masks: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The same random points of [Q, h, w] predictions and [N, H, W] targets: [Q, P], [N, P]."""
        coords = torch.rand(1, self.num_points, 2, device=pred_masks.device)
        # the masks as the channels of one image: one sampling grid serves all of them
        target_points = point_sample(
            target_masks[None].to(pred_masks.dtype), coords, align_corners=False
        )[0]
        pred_points = point_sample(pred_masks[None], coords, align_corners=False)[0]
        return pred_points.float(), target_points.float()
