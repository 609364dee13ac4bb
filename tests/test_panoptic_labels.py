"""Panoptic label decoding, the derived semantic map and the per-segment training targets."""

import numpy as np
import pytest
import torch

from semask.data.panoptic_labels import (
    id_to_rgb,
    rgb_to_id,
    segment_instances,
    semantic_from_segments,
)

# 4x5 panoptic label: void, a stuff segment (id 7, class 2), two things of class 0
# (ids 300 and 70000, which need G and B), a crowd region of class 1 (id 5), an unlisted id 9.
IDS = np.array(
    [
        [0, 7, 7, 300, 300],
        [7, 7, 7, 300, 300],
        [70000, 70000, 5, 5, 9],
        [70000, 70000, 5, 5, 0],
    ]
)
SEGMENTS = [
    {"id": 7, "category_id": 2, "iscrowd": 0, "isthing": False},
    {"id": 300, "category_id": 0, "iscrowd": 0, "isthing": True},
    {"id": 70000, "category_id": 0, "iscrowd": 0, "isthing": True},
    {"id": 5, "category_id": 1, "iscrowd": 1, "isthing": True},
]


def test_rgb_round_trip_uses_the_coco_encoding():
    rgb = id_to_rgb(IDS)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 5, 3)
    assert rgb[0, 3].tolist() == [300 % 256, 300 // 256, 0]
    assert rgb[2, 0].tolist() == [70000 % 256, (70000 // 256) % 256, 70000 // 65536]
    np.testing.assert_array_equal(rgb_to_id(rgb), IDS)


def test_rgb_to_id_rejects_a_grey_png():
    with pytest.raises(ValueError, match=r"RGB \[H, W, 3\], got shape \(4, 5\)"):
        rgb_to_id(np.zeros((4, 5), np.uint8))


def test_id_to_rgb_rejects_ids_out_of_range():
    with pytest.raises(ValueError, match="0..256"):
        id_to_rgb(np.array([[256**3]]))


def test_semantic_map_covers_things_stuff_and_crowd_and_ignores_the_rest():
    semantic = semantic_from_segments(IDS, SEGMENTS, ignore_label=255)
    expected = np.array(
        [
            [255, 2, 2, 0, 0],
            [2, 2, 2, 0, 0],
            [0, 0, 1, 1, 255],
            [0, 0, 1, 1, 255],
        ]
    )
    np.testing.assert_array_equal(semantic, expected)
    assert semantic.dtype == np.uint8


def test_targets_are_one_mask_per_segment_without_crowd():
    instances = segment_instances(IDS, SEGMENTS)
    assert instances.image_size == (4, 5)
    assert instances.gt_classes.tolist() == [2, 0, 0]
    masks = instances.gt_masks.tensor
    for mask, segment_id in zip(masks, (7, 300, 70000)):
        np.testing.assert_array_equal(mask.numpy(), IDS == segment_id)
    # XYXY boxes of the masks: the thing of id 300 spans columns 3..4, rows 0..1.
    assert instances.gt_boxes.tensor[1].tolist() == [3.0, 0.0, 5.0, 2.0]


def test_things_only_drops_stuff_and_segments_cropped_away():
    cropped = IDS[:, 2:]  # id 70000 is cropped away
    instances = segment_instances(cropped, SEGMENTS, things_only=True)
    assert instances.gt_classes.tolist() == [0]
    np.testing.assert_array_equal(instances.gt_masks.tensor[0].numpy(), cropped == 300)


def test_an_image_without_targets_gives_empty_instances_of_its_size():
    instances = segment_instances(np.zeros((3, 4), np.int64), SEGMENTS)
    assert len(instances) == 0
    assert instances.gt_masks.tensor.shape == (0, 3, 4)
    assert instances.gt_boxes.tensor.shape == (0, 4)
    assert instances.gt_classes.dtype == torch.int64
