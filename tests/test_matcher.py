"""Hungarian matcher: recovers planted assignments, ignores target order, handles empty targets."""

import pytest
import torch

from semask.modeling.matcher import (
    HungarianMatcher,
)


def _random_targets(num: int, size=(16, 20), num_classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randperm(num_classes, generator=g)[:num]
    masks = torch.rand(num, *size, generator=g) > 0.5
    return {"labels": labels, "masks": masks}


@pytest.mark.parametrize("mask_loss", ["sigmoid_ce", "focal"])
def test_recovers_planted_assignment(mask_loss):
    target = _random_targets(3)
    perm = torch.tensor([4, 0, 2])  # query perm[j] predicts target j
    logits = torch.full((1, 6, 6), -5.0)
    masks = torch.full((1, 6, 16, 20), -8.0)
    for j, q in enumerate(perm):
        logits[0, q, target["labels"][j]] = 5.0
        masks[0, q] = torch.where(target["masks"][j], 8.0, -8.0)
    matcher = HungarianMatcher(
        cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=500, mask_loss=mask_loss
    )
    ((rows, cols),) = matcher({"pred_logits": logits, "pred_masks": masks}, [target])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 4, 1: 0, 2: 2}


def test_invariant_to_target_order():
    torch.manual_seed(0)
    outputs = {"pred_logits": torch.randn(1, 8, 6), "pred_masks": torch.randn(1, 8, 16, 20)}
    target = _random_targets(4, seed=3)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = {"labels": target["labels"][order], "masks": target["masks"][order]}
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=300)
    torch.manual_seed(1)
    ((rows, cols),) = matcher(outputs, [target])
    torch.manual_seed(1)
    ((rows_s, cols_s),) = matcher(outputs, [shuffled])
    pairs = {(int(r), int(c)) for r, c in zip(rows, cols)}
    pairs_shuffled = {(int(r), int(order[c])) for r, c in zip(rows_s, cols_s)}
    assert pairs == pairs_shuffled
    assert len(pairs) == 4


def test_empty_targets_give_empty_indices():
    outputs = {"pred_logits": torch.randn(2, 5, 4), "pred_masks": torch.randn(2, 5, 8, 8)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8, dtype=bool)},
        _random_targets(2, size=(8, 8), num_classes=3),
    ]
    indices = HungarianMatcher(num_points=64)(outputs, targets)
    assert [len(r) for r, _ in indices] == [0, 2]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="all 0"):
        HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0)
    with pytest.raises(ValueError, match="mask_loss"):
        HungarianMatcher(mask_loss="bce")
    with pytest.raises(ValueError, match="num_points"):
        HungarianMatcher(num_points=0)
