"""Panoptic and instance post-processing on a hand-built case, every value worked out by hand.

Four queries over a 1 x 5 image, K = 3 classes (class 2 is a thing). Class probabilities:
query 0 class 0 at 8/11, query 1 class 2 at 2/3, query 2 class 0 at 1/2, query 3 "no object" at
30/33. Mask logits ln 7, ln 3, 0, -ln 3 are probabilities 7/8, 3/4, 1/2, 1/4.
"""

import math

import pytest
import torch

from semask.modeling.meta_arch.inference import instance_inference, panoptic_inference

L3, L7 = math.log(3.0), math.log(7.0)
MASK_CLS = torch.tensor(
    [
        [math.log(8.0), 0.0, 0.0, 0.0],
        [0.0, 0.0, math.log(6.0), 0.0],
        [L3, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, math.log(30.0)],
    ]
)
MASK_PRED = torch.tensor(
    [
        [L3, L3, -L3, 0.0, -L3],  # probabilities 3/4 3/4 1/4 1/2 1/4
        [-L3, 0.0, L7, L3, -L3],  # 1/4 1/2 7/8 3/4 1/4
        [-L3, -L3, -L3, -L3, L3],  # 1/4 1/4 1/4 1/4 3/4
        [L3, L3, L3, L3, L3],  # 3/4 everywhere, but "no object": dropped
    ]
)[:, None, :]


def _panoptic(overlap_threshold):
    return panoptic_inference(
        MASK_CLS,
        MASK_PRED,
        object_mask_threshold=0.4,
        overlap_threshold=overlap_threshold,
        thing_ids={2},
    )


def test_panoptic_owners_overlap_and_stuff_merge_by_hand():
    """score x probability per pixel (query 0 | 1 | 2):
    pixel 0: 6/11 | 1/6 | 1/8 -> 0;  pixel 1: 6/11 | 1/3 | 1/8 -> 0;  pixel 2: 2/11 | 7/12 | 1/8
    -> 1;  pixel 3: 4/11 | 1/2 | 1/8 -> 1;  pixel 4: 2/11 | 1/6 | 3/8 -> 2.
    Query 0 keeps 2 of its 3 pixels at probability >= 1/2 (ratio 2/3), query 1 2 of 3, query 2
    1 of 1; query 2 is stuff of query 0's class, so it joins segment 1."""
    seg, info = _panoptic(overlap_threshold=0.5)
    assert seg.tolist() == [[1, 1, 2, 2, 1]]
    assert info == [
        {"id": 1, "isthing": False, "category_id": 0},
        {"id": 2, "isthing": True, "category_id": 2},
    ]


def test_panoptic_overlap_threshold_between_two_thirds_and_one():
    seg, info = _panoptic(overlap_threshold=0.7)
    assert seg.tolist() == [[0, 0, 0, 0, 1]]
    assert info == [{"id": 1, "isthing": False, "category_id": 0}]


def test_instance_scores_classes_and_boxes_by_hand():
    """Top 3 (query, class) pairs: (0, 0) 8/11, (1, 2) 2/3, (2, 0) 1/2. Binary masks are logits
    > 0; the mean probability inside them is 3/4, (7/8 + 3/4) / 2 = 13/16 and 3/4."""
    result = instance_inference(MASK_CLS, MASK_PRED, topk=3)
    order = result.scores.argsort(descending=True)
    assert result.scores[order].tolist() == pytest.approx(
        [8 / 11 * 3 / 4, 2 / 3 * 13 / 16, 1 / 2 * 3 / 4], rel=1e-5
    )
    assert result.pred_classes[order].tolist() == [0, 2, 0]
    assert result.pred_masks[order].tolist() == [
        [[1.0, 1.0, 0.0, 0.0, 0.0]],
        [[0.0, 0.0, 1.0, 1.0, 0.0]],
        [[0.0, 0.0, 0.0, 0.0, 1.0]],
    ]
    assert result.pred_boxes.tensor[order].tolist() == [
        [0.0, 0.0, 2.0, 1.0],
        [2.0, 0.0, 4.0, 1.0],
        [4.0, 0.0, 5.0, 1.0],
    ]


def test_instance_thing_filter_keeps_only_thing_pairs():
    result = instance_inference(MASK_CLS, MASK_PRED, topk=3, thing_ids={2})
    assert result.pred_classes.tolist() == [2]
    assert result.scores.tolist() == pytest.approx([2 / 3 * 13 / 16], rel=1e-5)


def _logit(p):
    return math.log(p / (1 - p))


def test_panoptic_overlap_counts_owned_pixels_outside_the_mask():
    """Mask2Former's ratio: pixels a query owns over its mask's area, owned pixels below 1/2
    probability included. Query 0 (score 0.95) owns pixel 1 only; query 1 (score 0.9, mask
    probabilities 0.9 0.9 0.4 0.4) owns pixels 0, 2, 3: 3 owned over a mask of 2 pixels passes
    0.8, though only pixel 0 is both owned and in its mask (1/2)."""
    # K = 3: score = e^a / (e^a + 3), so e^a = 57 gives 0.95 and e^a = 27 gives 0.9.
    mask_cls = torch.tensor([[0.0, math.log(57.0), 0.0, 0.0], [0.0, 0.0, math.log(27.0), 0.0]])
    mask_pred = torch.tensor(
        [
            [_logit(0.1), _logit(0.99), _logit(0.1), _logit(0.1)],
            [_logit(0.9), _logit(0.9), _logit(0.4), _logit(0.4)],
        ]
    )[:, None, :]
    seg, info = panoptic_inference(
        mask_cls, mask_pred, object_mask_threshold=0.5, overlap_threshold=0.8, thing_ids={1, 2}
    )
    assert seg.tolist() == [[2, 1, 0, 0]]
    assert [(s["id"], s["category_id"]) for s in info] == [(1, 1), (2, 2)]
