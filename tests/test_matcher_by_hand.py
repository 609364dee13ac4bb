"""Matching costs and assignments worked out by hand, under the configured cost weights.

Two queries compete for one target of class 0 covering a 2 x 2 image: query 0 has the better class
(p = 9/11) and the worse mask (probability 1/2), query 1 the worse class (1/3) and the better mask
(3/4). The point sampling reads the four pixel centres, where it returns the pixel values exactly.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import semask_cfg

from semask.modeling.matcher import pairwise_dice, pairwise_sigmoid_ce, pairwise_sigmoid_focal
from semask.modeling.meta_arch.semask_maskformer import build_criterion

LN2, LN3 = math.log(2.0), math.log(3.0)
CENTRES = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]])

OUTPUTS = {
    "pred_logits": torch.tensor([[[math.log(9.0), 0.0, 0.0], [0.0, 0.0, 0.0]]]),
    "pred_masks": torch.stack([torch.zeros(2, 2), torch.full((2, 2), LN3)])[None],
}
TARGETS = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 2, 2, dtype=torch.bool)}]
# per query: class cost -p, BCE against 1 at every point, dice 1 - (2 sum(p) + 1) / (sum(p) + 5)
CLASS_COST = [-9 / 11, -1 / 3]
MASK_COST = [LN2, math.log(4 / 3)]
DICE_COST = [1 - 5 / 7, 1 - 7 / 8]


@pytest.fixture(autouse=True)
def centre_points(monkeypatch):
    def fake_rand(*size, **kwargs):
        assert tuple(size) == (1, 4, 2), size
        return CENTRES.clone()

    monkeypatch.setattr(torch, "rand", fake_rand)


def _matcher(class_weight=None, mask_weight=None):
    cfg = semask_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 4
    if class_weight is not None:
        cfg.MODEL.MASK_FORMER.CLASS_WEIGHT = class_weight
        cfg.MODEL.MASK_FORMER.MASK_WEIGHT = mask_weight
    return build_criterion(cfg).matcher


def _matched_query(matcher):
    ((rows, cols),) = matcher(OUTPUTS, TARGETS)
    assert cols.tolist() == [0]
    return int(rows[0])


def test_cost_matrix_by_hand_under_default_weights():
    """Defaults: CLASS_WEIGHT 1, MASK_WEIGHT 20, DICE_WEIGHT 1."""
    cost = _matcher().cost_matrix(
        OUTPUTS["pred_logits"][0],
        OUTPUTS["pred_masks"][0],
        TARGETS[0]["labels"],
        TARGETS[0]["masks"],
    )
    expected = [[c + 20 * m + d] for c, m, d in zip(CLASS_COST, MASK_COST, DICE_COST)]
    assert cost.tolist() == [[pytest.approx(v, rel=1e-6)] for (v,) in expected]


def test_default_weights_prefer_the_better_mask():
    # costs 1 * -9/11 + 20 ln 2 + 2/7 = 13.33 and 1 * -1/3 + 20 ln 4/3 + 1/8 = 5.55
    assert _matched_query(_matcher()) == 1


def test_swapping_class_and_mask_weights_prefers_the_better_class():
    # costs 20 * -9/11 + ln 2 + 2/7 = -15.38 and 20 * -1/3 + ln 4/3 + 1/8 = -6.25
    assert _matched_query(_matcher(class_weight=20.0, mask_weight=1.0)) == 0


def test_focal_cost_assignment_follows_the_weights():
    """MaskFormer's full-grid costs (no sampling): the same preference flips with the weights."""
    for (class_weight, mask_weight), query in [((1.0, 20.0), 1), ((20.0, 1.0), 0)]:
        matcher = _matcher(class_weight, mask_weight)
        matcher.mask_loss = "focal"
        assert _matched_query(matcher) == query


# Pairwise costs of two predictions [2, 2 points] against two targets, by hand:
# logits (0, ln 3) and (-ln 3, 0) are probabilities (1/2, 3/4) and (1/4, 1/2).
LOGITS = torch.tensor([[0.0, LN3], [-LN3, 0.0]])
LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_pairwise_sigmoid_ce_by_hand():
    ln43 = math.log(4 / 3)
    expected = [[1.5 * LN2, (LN2 + ln43) / 2], [1.5 * LN2, (ln43 + LN2) / 2]]
    assert pairwise_sigmoid_ce(LOGITS, LABELS).tolist() == [
        pytest.approx(row, rel=1e-6) for row in expected
    ]


def test_pairwise_sigmoid_ce_is_the_mean_bce_of_every_pair_also_for_large_logits():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 40, generator=gen, dtype=torch.float64) * 30  # saturated sigmoids
    labels = torch.randint(0, 2, (3, 40), generator=gen).double()
    expected = torch.stack(
        [
            torch.stack(
                [F.binary_cross_entropy_with_logits(q, t, reduction="mean") for t in labels]
            )
            for q in logits
        ]
    )
    torch.testing.assert_close(pairwise_sigmoid_ce(logits, labels), expected)


def test_pairwise_dice_by_hand():
    # e.g. [0, 1]: probabilities (1/2, 3/4) on target (0, 1): 1 - (3/2 + 1) / (5/4 + 1 + 1)
    expected = [[5 / 13, 3 / 13], [5 / 11, 3 / 11]]
    assert pairwise_dice(LOGITS, LABELS).tolist() == [
        pytest.approx(row, rel=1e-6) for row in expected
    ]


def test_pairwise_focal_by_hand():
    def focal(p, y):
        return 0.25 * (1 - p) ** 2 * -math.log(p) if y else 0.75 * p**2 * -math.log(1 - p)

    probs = [[0.5, 0.75], [0.25, 0.5]]
    expected = [
        [sum(focal(p, y) for p, y in zip(probs[q], LABELS[n].tolist())) / 2 for n in range(2)]
        for q in range(2)
    ]
    assert pairwise_sigmoid_focal(LOGITS, LABELS).tolist() == [
        pytest.approx(row, rel=1e-6) for row in expected
    ]
