"""Post-processing: semantic, panoptic and instance outputs, input padding."""

import pytest
import torch

from semask.modeling.meta_arch.inference import (
    instance_inference,
    normalize_and_pad,
    pad_sem_seg,
    panoptic_inference,
    semantic_inference,
)

K = 3  # classes; logits have K + 1 columns


def _cls(*rows):
    """Class logits that put almost all probability on the given class of each query."""
    logits = torch.full((len(rows), K + 1), -10.0)
    for q, c in enumerate(rows):
        logits[q, c] = 10.0
    return logits


def test_semantic_inference_matches_loop():
    g = torch.Generator().manual_seed(0)
    cls, masks = torch.randn(5, K + 1, generator=g), torch.randn(5, 6, 7, generator=g)
    out = semantic_inference(cls, masks)
    probs = cls.softmax(-1)
    expected = sum(probs[q, :K, None, None] * masks[q].sigmoid() for q in range(5))
    torch.testing.assert_close(out, expected)
    assert out.shape == (K, 6, 7)


@pytest.mark.parametrize("band_rows", [1, 4, 16, 40])
def test_semantic_inference_in_bands_equals_one_einsum(band_rows):
    """Bands of rows (the last one shorter when H is not a multiple) give the whole einsum."""
    g = torch.Generator().manual_seed(band_rows)
    cls, masks = torch.randn(7, K + 1, generator=g), torch.randn(7, 37, 23, generator=g) * 4
    whole = torch.einsum("qc,qhw->chw", cls.softmax(-1)[:, :K], masks.sigmoid())
    torch.testing.assert_close(semantic_inference(cls, masks, band_rows), whole)


def _halves():
    left = torch.full((8, 8), -10.0)
    left[:, :4] = 10.0
    return left, -left


def test_panoptic_merges_stuff_and_keeps_things():
    left, right = _halves()
    top_right = torch.full((8, 8), -10.0)
    top_right[:4, 4:] = 10.0
    # queries: stuff 0 on the left, thing 2 on the right, stuff 0 again (top right, lower score),
    # and a "no object" query
    cls = _cls(0, 2, 0, K)
    cls[2, 0] = 3.0
    masks = torch.stack([left, right, top_right, left])
    seg, info = panoptic_inference(
        cls, masks, object_mask_threshold=0.5, overlap_threshold=0.8, thing_ids={2}
    )
    assert info == [
        {"id": 1, "isthing": False, "category_id": 0},
        {"id": 2, "isthing": True, "category_id": 2},
    ]
    assert (seg[:, :4] == 1).all() and (seg[:, 4:] == 2).all()
    assert seg.dtype == torch.int32


def test_panoptic_thresholds():
    left, right = _halves()
    cls = _cls(1, 1)
    cls[1] = 0.0  # second query is unsure (probability 1 / (K + 1)): dropped
    seg, info = panoptic_inference(
        cls,
        torch.stack([left, right]),
        object_mask_threshold=0.5,
        overlap_threshold=0.8,
        thing_ids={1},
    )
    assert [s["id"] for s in info] == [1] and int((seg == 0).sum()) == 32
    # the wide mask loses its left half to the surer left mask: 50% of it remains
    wide = torch.full((8, 8), 5.0)
    for threshold, num_segments in [(0.8, 1), (0.4, 2)]:
        seg, info = panoptic_inference(
            _cls(1, 2),
            torch.stack([left, wide]),
            object_mask_threshold=0.5,
            overlap_threshold=threshold,
            thing_ids={1, 2},
        )
        assert len(info) == num_segments and info[0]["category_id"] == 1
    empty, none = panoptic_inference(
        _cls(K), left[None], object_mask_threshold=0.5, overlap_threshold=0.8, thing_ids=set()
    )
    assert none == [] and (empty == 0).all()


def test_instance_inference_topk_boxes_and_things():
    left, right = _halves()
    cls = _cls(1, 2)
    result = instance_inference(cls, torch.stack([left, right]), topk=2)
    assert len(result) == 2 and sorted(result.pred_classes.tolist()) == [1, 2]
    q_left = int((result.pred_classes == 1).nonzero())
    assert result.pred_boxes.tensor[q_left].tolist() == [0.0, 0.0, 4.0, 8.0]
    assert result.pred_masks.shape == (2, 8, 8) and (result.scores > 0.99).all()
    things = instance_inference(cls, torch.stack([left, right]), topk=2, thing_ids={2})
    assert things.pred_classes.tolist() == [2]


def test_normalize_and_pad():
    images = [
        torch.full((3, 30, 40), 100, dtype=torch.uint8),
        torch.zeros(3, 50, 20, dtype=torch.uint8),
    ]
    mean, std = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1), torch.tensor([2.0, 4.0, 5.0]).view(
        3, 1, 1
    )
    batch = normalize_and_pad([{"image": im} for im in images], mean, std, 32)
    assert batch.tensor.shape == (2, 3, 64, 64)
    assert batch.image_sizes == [(30, 40), (50, 20)]
    torch.testing.assert_close(batch.tensor[0, :, 0, 0], torch.tensor([45.0, 20.0, 14.0]))
    assert (batch.tensor[0, :, 30:] == 0).all() and (batch.tensor[1, :, :, 20:] == 0).all()


def test_pad_sem_seg_and_errors():
    images = normalize_and_pad(
        [{"image": torch.zeros(3, 10, 12, dtype=torch.uint8)}],
        torch.zeros(3, 1, 1),
        torch.ones(3, 1, 1),
        8,
    )
    padded = pad_sem_seg([{"sem_seg": torch.ones(10, 12, dtype=torch.int64)}], images, 255)
    assert padded.shape == (1, 16, 16) and (padded[0, :10, :12] == 1).all()
    assert (padded[0, 10:] == 255).all() and (padded[0, :, 12:] == 255).all()
    with pytest.raises(KeyError, match="sem_seg"):
        pad_sem_seg([{}], images, 255)
    with pytest.raises(ValueError, match="sem_seg shape"):
        pad_sem_seg([{"sem_seg": torch.ones(4, 4, dtype=torch.int64)}], images, 255)
