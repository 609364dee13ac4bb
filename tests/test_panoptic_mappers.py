"""Panoptic and instance training mappers (ADE20K-style and large-scale jitter): targets and
semantic maps pixel by pixel, padding, flips, bad samples; the mapper of each config name."""

import logging

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.data import transforms as T
from pycocotools import mask as mask_util

from semask.data import (
    DataError,
    MaskFormerInstanceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    build_semantic_augmentations,
    build_train_mapper,
    training_bad_samples,
)
from semask.data.mapper import DATASET_MAPPERS
from semask.data.panoptic_labels import id_to_rgb
from semask.data.train_mapper import MAPPER_CLASSES
from semask.engine import ConfigError, build_cfg, validate_config

NUM_CLASSES = 8
HEIGHT, WIDTH = 30, 45
# Segment ids, one of each kind; large ids use all three RGB channels.
STUFF, THING_A, THING_B, CROWD, UNLISTED, ABSENT = 7, 2 + 256 * 3, 256**2 * 200 + 5, 40, 99, 11


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def _write_image(path, image):
    cv2.imwrite(str(path), image[..., ::-1])  # PNG: lossless, compared pixel by pixel
    return str(path)


def _segment_ids():
    ids = np.zeros((HEIGHT, WIDTH), np.int64)
    ids[:, :20] = STUFF
    ids[5:15, 22:30] = THING_A
    ids[18:28, 25:40] = THING_B
    ids[0:4, 30:45] = CROWD
    ids[20:30, 0:5] = UNLISTED
    return ids


SEGMENTS_INFO = [
    {"id": STUFF, "category_id": 0, "iscrowd": 0, "isthing": False},
    {"id": THING_A, "category_id": 3, "iscrowd": 0, "isthing": True},
    {"id": THING_B, "category_id": 3, "iscrowd": 0, "isthing": True},
    {"id": CROWD, "category_id": 5, "iscrowd": 1, "isthing": True},
    {"id": ABSENT, "category_id": 6, "iscrowd": 0, "isthing": True},
]


def _expected_panoptic_semantic(ids):
    """By hand: listed segments (crowd too) have their class, void and unlisted ids 255."""
    expected = np.full(ids.shape, 255, np.int64)
    for segment_id, category in ((STUFF, 0), (THING_A, 3), (THING_B, 3), (CROWD, 5)):
        expected[ids == segment_id] = category
    return torch.from_numpy(expected)


def _panoptic_sample(tmp_path, ids=None, segments_info=SEGMENTS_INFO):
    ids = _segment_ids() if ids is None else ids
    pan_file = tmp_path / "pan.png"
    cv2.imwrite(str(pan_file), id_to_rgb(ids)[..., ::-1])
    return {
        "file_name": _write_image(tmp_path / "image.png", _image()),
        "pan_seg_file_name": str(pan_file),
        "sem_seg_file_name": str(tmp_path / "never_read.png"),
        "segments_info": [dict(s) for s in segments_info],
        "height": HEIGHT,
        "width": WIDTH,
        "image_id": 1,
    }


def _kwargs(augmentations, size_divisibility=-1, policy="error"):
    return {
        "augmentations": augmentations,
        "image_format": "RGB",
        "ignore_label": 255,
        "num_classes": NUM_CLASSES,
        "size_divisibility": size_divisibility,
        "bad_sample_policy": policy,
    }


def _panoptic_mapper(augmentations, **kwargs):
    return MaskFormerPanopticDatasetMapper(True, **_kwargs(augmentations, **kwargs))


def _instance_mapper(augmentations, **kwargs):
    return MaskFormerInstanceDatasetMapper(True, **_kwargs(augmentations, **kwargs))


def _assert_padded(out, height, width):
    """Image 128, sem_seg 255 and no mask outside the top-left ``height`` x ``width``."""
    for region in ((slice(height, None), slice(None)), (slice(None), slice(width, None))):
        assert (out["image"][(slice(None), *region)] == 128).all()
        assert (out["sem_seg"][region] == 255).all()
        assert not out["instances"].gt_masks.tensor[(slice(None), *region)].any()


def test_panoptic_targets_semantic_map_and_padding(tmp_path):
    sample = _panoptic_sample(tmp_path)
    out = _panoptic_mapper([], size_divisibility=32)(sample)
    ids = torch.from_numpy(_segment_ids())

    assert out["image"].shape == (3, 32, 64) and out["image"].dtype == torch.uint8
    assert torch.equal(
        out["image"][:, :HEIGHT, :WIDTH], torch.from_numpy(_image()).permute(2, 0, 1)
    )
    assert out["sem_seg"].shape == (32, 64) and out["sem_seg"].dtype == torch.int64
    assert torch.equal(out["sem_seg"][:HEIGHT, :WIDTH], _expected_panoptic_semantic(ids.numpy()))
    _assert_padded(out, HEIGHT, WIDTH)

    instances = out["instances"]  # crowd and the absent segment give no target
    assert instances.image_size == (32, 64)
    assert instances.gt_classes.tolist() == [0, 3, 3]
    masks = instances.gt_masks.tensor
    for mask, segment_id in zip(masks, (STUFF, THING_A, THING_B)):
        assert torch.equal(mask[:HEIGHT, :WIDTH], ids == segment_id)
    assert instances.gt_boxes.tensor[1].tolist() == [22.0, 5.0, 30.0, 15.0]
    assert "pan_seg_file_name" not in out and "sem_seg_file_name" not in out
    assert out["segments_info"] == sample["segments_info"] and out["image_id"] == 1


def test_panoptic_flip_moves_image_masks_and_semantic_map_together(tmp_path):
    out = _panoptic_mapper([T.RandomFlip(prob=1.0)])(_panoptic_sample(tmp_path))
    flipped_ids = torch.from_numpy(_segment_ids()).flip(1)
    assert torch.equal(out["image"], torch.from_numpy(_image()).permute(2, 0, 1).flip(2))
    assert torch.equal(out["sem_seg"], _expected_panoptic_semantic(flipped_ids.numpy()))
    for mask, segment_id in zip(out["instances"].gt_masks.tensor, (STUFF, THING_A, THING_B)):
        assert torch.equal(mask, flipped_ids == segment_id)


def test_panoptic_resize_keeps_large_segment_ids_exact(tmp_path):
    """Ids up to 256**3 survive interpolation: the resized masks and semantic map agree and
    every id's pixels are a nearest-neighbour copy."""
    out = _panoptic_mapper([T.Resize((60, 90))])(_panoptic_sample(tmp_path))
    ids = torch.from_numpy(_segment_ids()).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out["sem_seg"], _expected_panoptic_semantic(ids.numpy()))
    for mask, segment_id in zip(out["instances"].gt_masks.tensor, (STUFF, THING_A, THING_B)):
        assert torch.equal(mask, ids == segment_id)


class _RecordSemSeg(T.Augmentation):
    """Records the class map that augmentations (the category-area crop) are given."""

    def get_transform(self, image, sem_seg):
        self.seen = sem_seg
        return T.NoOpTransform()


def test_augmentations_read_the_class_map(tmp_path):
    record = _RecordSemSeg()
    _panoptic_mapper([record])(_panoptic_sample(tmp_path))
    assert torch.equal(
        torch.from_numpy(record.seen).long(), _expected_panoptic_semantic(_segment_ids())
    )
    _instance_mapper([record])(_instance_sample(tmp_path))
    assert torch.equal(torch.from_numpy(record.seen).long(), _expected_instance_semantic())


def _rle(mask, compressed=True):
    if compressed:
        return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts, previous, run = [], 0, 0  # column-major runs, starting with zeros
    for value in mask.T.flatten().astype(int):
        if value != previous:
            counts.append(run)
            previous, run = value, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _box_mask(y0, y1, x0, x1):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _polygon(y0, y1, x0, x1):
    """COCO polygon whose rasterisation is ``_box_mask(y0, y1, x0, x1)``."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _instance_sample(tmp_path):
    annotations = [
        {"segmentation": _polygon(5, 15, 5, 15), "category_id": 2, "iscrowd": 0},
        {"segmentation": _rle(_box_mask(20, 26, 30, 41)), "category_id": 4, "iscrowd": 0},
        {"segmentation": _rle(_box_mask(0, 4, 0, 45), False), "category_id": 1, "iscrowd": 1},
        {"segmentation": _polygon(10, 20, 10, 20), "category_id": 6, "iscrowd": 0},
    ]
    return {
        "file_name": _write_image(tmp_path / "image.png", _image()),
        "annotations": annotations,
        "height": HEIGHT,
        "width": WIDTH,
    }


# Non-crowd annotations (class, mask) and the semantic map: crowd included, the last overlap wins.
INSTANCE_TARGETS = [(2, (5, 15, 5, 15)), (4, (20, 26, 30, 41)), (6, (10, 20, 10, 20))]


def _expected_instance_semantic():
    expected = torch.full((HEIGHT, WIDTH), 255, dtype=torch.int64)
    expected[0:4] = 1
    for cls, (y0, y1, x0, x1) in INSTANCE_TARGETS:
        expected[y0:y1, x0:x1] = cls
    return expected


def test_instance_targets_from_polygons_and_rle(tmp_path):
    out = _instance_mapper([], size_divisibility=32)(_instance_sample(tmp_path))
    assert out["image"].shape == (3, 32, 64)
    assert torch.equal(
        out["image"][:, :HEIGHT, :WIDTH], torch.from_numpy(_image()).permute(2, 0, 1)
    )
    assert torch.equal(out["sem_seg"][:HEIGHT, :WIDTH], _expected_instance_semantic())
    _assert_padded(out, HEIGHT, WIDTH)
    instances = out["instances"]
    assert instances.gt_classes.tolist() == [cls for cls, _ in INSTANCE_TARGETS]
    for mask, (_, box) in zip(instances.gt_masks.tensor, INSTANCE_TARGETS):
        assert torch.equal(mask[:HEIGHT, :WIDTH], torch.from_numpy(_box_mask(*box)))
    assert "annotations" not in out


def test_instance_flip_and_crop_drop_emptied_instances(tmp_path):
    flip_crop = [T.HFlipTransform(WIDTH), T.CropTransform(0, 0, 30, 24)]
    out = _instance_mapper(flip_crop)(_instance_sample(tmp_path))
    expected = _expected_instance_semantic().flip(1)[:24, :30]
    assert torch.equal(
        out["image"], torch.from_numpy(_image()).permute(2, 0, 1).flip(2)[:, :24, :30]
    )
    assert torch.equal(out["sem_seg"], expected)
    # The first annotation (x 5..14) is flipped to x 30..39, then cropped away.
    instances = out["instances"]
    assert instances.gt_classes.tolist() == [4, 6]
    for mask, (_, box) in zip(instances.gt_masks.tensor, INSTANCE_TARGETS[1:]):
        assert torch.equal(mask, torch.from_numpy(_box_mask(*box)).flip(1)[:24, :30])
    out = _instance_mapper([T.CropTransform(0, 0, 25, 18)])(_instance_sample(tmp_path))
    assert out["instances"].gt_classes.tolist() == [2, 6]
    assert out["instances"].gt_masks.tensor.shape == (2, 18, 25)


def test_instance_image_without_annotations(tmp_path):
    sample = _instance_sample(tmp_path)
    sample["annotations"] = []
    out = _instance_mapper([])(sample)
    assert out["instances"].gt_masks.tensor.shape == (0, HEIGHT, WIDTH)
    assert len(out["instances"].gt_classes) == 0 and (out["sem_seg"] == 255).all()


def _cfg(mapper_name, image_size=64, min_scale=0.5, max_scale=0.5):
    cfg = semask_cfg()
    cfg.DATASETS.TRAIN = ("test_panoptic_mappers_unregistered",)  # metadata without ignore_label
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = NUM_CLASSES
    cfg.INPUT.DATASET_MAPPER_NAME = mapper_name
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.IMAGE_SIZE = image_size
    cfg.INPUT.MIN_SCALE = min_scale
    cfg.INPUT.MAX_SCALE = max_scale
    return cfg


@pytest.mark.parametrize(
    "name, sample",
    [("coco_panoptic_lsj", _panoptic_sample), ("coco_instance_lsj", _instance_sample)],
)
def test_large_scale_jitter_gives_image_size(tmp_path, name, sample):
    mapper = build_train_mapper(_cfg(name))
    assert [type(a).__name__ for a in mapper.augmentations.augs] == [
        "RandomFlip",
        "ResizeScale",
        "FixedSizeCrop",
    ]
    out = mapper(sample(tmp_path))
    # Scale 0.5 of 64: the 30 x 45 image fits a 32 x 32 square (21 x 32), then padded.
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    assert out["instances"].gt_masks.tensor.shape[1:] == (64, 64)
    _assert_padded(out, 21, 32)
    assert (out["sem_seg"][:21, :32] != 255).any()
    mapper = build_train_mapper(_cfg(name, min_scale=2.0, max_scale=2.0))
    out = mapper(sample(tmp_path))
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    # Wherever the random crop falls, every target keeps pixels of its class in the semantic map
    # and no target pixel is unlabelled there (overlapping targets may take each other's pixels).
    for cls, mask in zip(out["instances"].gt_classes, out["instances"].gt_masks.tensor):
        assert (out["sem_seg"][mask] == cls).any() and (out["sem_seg"][mask] != 255).all()


def test_ade20k_style_mappers_use_the_semantic_augmentations():
    for name in ("mask_former_panoptic", "mask_former_instance"):
        cfg = _cfg(name)
        cfg.INPUT.CROP.ENABLED = True
        cfg.INPUT.COLOR_AUG_SSD = True
        augs = build_train_mapper(cfg).augmentations.augs  # transforms wrapped in augmentations
        types = [type(getattr(aug, "tfm", aug)) for aug in augs]
        assert types == [type(aug) for aug in build_semantic_augmentations(cfg)]
        assert augs[1].ignored_category == 255


def test_build_train_mapper_picks_each_name_and_refuses_others():
    assert set(MAPPER_CLASSES) == set(DATASET_MAPPERS)
    expected = {
        "mask_former_semantic": MaskFormerSemanticDatasetMapper,
        "semantic": MaskFormerSemanticDatasetMapper,
        "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
        "coco_panoptic_lsj": MaskFormerPanopticDatasetMapper,
        "mask_former_instance": MaskFormerInstanceDatasetMapper,
        "coco_instance_lsj": MaskFormerInstanceDatasetMapper,
    }
    for name, mapper_class in expected.items():
        mapper = build_train_mapper(_cfg(name))
        assert type(mapper) is mapper_class and mapper.is_train
    assert build_train_mapper(_cfg("semantic")).with_masks is False
    with pytest.raises(ValueError) as error:
        build_train_mapper(_cfg("panoptic"))
    assert str(error.value) == (
        "INPUT.DATASET_MAPPER_NAME must be one of ['coco_instance_lsj', 'coco_panoptic_lsj', "
        "'mask_former_instance', 'mask_former_panoptic', 'mask_former_semantic', 'semantic'], "
        "got 'panoptic'"
    )
    with pytest.raises(ValueError) as error:
        MaskFormerPanopticDatasetMapper(_cfg("coco_instance_lsj"), True)
    assert str(error.value) == (
        "MaskFormerPanopticDatasetMapper serves INPUT.DATASET_MAPPER_NAME "
        "['coco_panoptic_lsj', 'mask_former_panoptic'], got 'coco_instance_lsj'"
    )
    with pytest.raises(ValueError, match="must be one of \\['mask_former_semantic', 'semantic'\\]"):
        MaskFormerSemanticDatasetMapper(_cfg("mask_former_panoptic"), True)


def test_panoptic_png_of_another_size_names_both_files(tmp_path):
    sample = _panoptic_sample(tmp_path, ids=np.zeros((HEIGHT + 2, WIDTH), np.int64))
    with pytest.raises(DataError) as error:
        _panoptic_mapper([])(sample)
    assert str(error.value) == (
        f"panoptic PNG {sample['pan_seg_file_name']} is 45x32 (width x height) but its image "
        f"{sample['file_name']} is 45x30"
    )


def test_unreadable_panoptic_png_and_bad_categories_are_named(tmp_path):
    sample = _panoptic_sample(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    broken = dict(sample, pan_seg_file_name=str(tmp_path / "broken.png"))
    with pytest.raises(DataError, match=f"^{broken['pan_seg_file_name']}: not a readable image"):
        _panoptic_mapper([])(broken)
    bad = dict(sample, segments_info=[dict(SEGMENTS_INFO[0], category_id=NUM_CLASSES)])
    with pytest.raises(DataError) as error:
        _panoptic_mapper([])(bad)
    assert str(error.value) == (
        f"segments_info of {sample['pan_seg_file_name']} has category_id 8, not a class id 0..7 "
        "(MODEL.SEM_SEG_HEAD.NUM_CLASSES 8)"
    )


def test_bad_instance_annotations_are_named(tmp_path):
    sample = _instance_sample(tmp_path)
    sample["annotations"][1]["segmentation"] = [[1, 2, 3, 4]]
    with pytest.raises(DataError) as error:
        _instance_mapper([])(sample)
    assert str(error.value) == (
        f"annotation 1 of {sample['file_name']}: bad segmentation (polygons must be lists of at "
        "least 3 (x, y) points)"
    )
    sample["annotations"][1]["segmentation"] = _rle(np.zeros((HEIGHT, 40), bool))
    with pytest.raises(DataError, match=r"annotation 1 .*RLE of size \[30, 40\], image \[30, 45\]"):
        _instance_mapper([])(sample)
    sample = _instance_sample(tmp_path)
    sample["annotations"][0]["category_id"] = -1
    with pytest.raises(DataError, match=f"annotations of {sample['file_name']} has category_id -1"):
        _instance_mapper([])(sample)


def test_missing_labels_and_inference_use_are_refused(tmp_path):
    with pytest.raises(ValueError, match="has no 'pan_seg_file_name'"):
        _panoptic_mapper([])({"file_name": "x.png"})
    with pytest.raises(ValueError, match="has no 'annotations'"):
        _instance_mapper([])({"file_name": "x.png"})
    mapper = MaskFormerInstanceDatasetMapper(False, **_kwargs([]))
    with pytest.raises(ValueError, match="training only"):
        mapper(_instance_sample(tmp_path))


def test_skip_policy_counts_and_returns_none(tmp_path, caplog):
    sample = _panoptic_sample(tmp_path, ids=np.zeros((HEIGHT + 2, WIDTH), np.int64))
    counter = training_bad_samples()
    counter.reset()
    with caplog.at_level(logging.WARNING):
        assert _panoptic_mapper([], policy="skip")(sample) is None
        sample = _instance_sample(tmp_path)
        sample["annotations"][0]["segmentation"] = "polygon"
        assert _instance_mapper([], policy="skip")(sample) is None
    assert counter.count == 2
    assert "skipping bad training sample (2 so far): annotation 0 of" in caplog.text
    with pytest.raises(ValueError, match="DATALOADER.BAD_SAMPLE_POLICY must be one of"):
        _panoptic_mapper([], policy="warn")


QUICKSTART = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"


@pytest.mark.parametrize(
    "opts, line",
    [
        (["INPUT.IMAGE_SIZE", "0"], "INPUT.IMAGE_SIZE = 0: must be an integer >= 1"),
        (["INPUT.MIN_SCALE", "0.0"], "INPUT.MIN_SCALE = 0.0: must be > 0"),
        (
            ["INPUT.MIN_SCALE", "1.5", "INPUT.MAX_SCALE", "1.0"],
            "INPUT.MAX_SCALE = 1.0: must be >= INPUT.MIN_SCALE (1.5)",
        ),
    ],
)
@pytest.mark.parametrize("name", ["coco_panoptic_lsj", "coco_instance_lsj"])
def test_validation_of_large_scale_jitter(name, opts, line):
    cfg = build_cfg(str(QUICKSTART), ["INPUT.DATASET_MAPPER_NAME", name, *opts])
    with pytest.raises(ConfigError) as error:
        validate_config(cfg, datasets=False)
    assert f"  {line}" in str(error.value).splitlines()


@pytest.mark.parametrize("name", sorted(set(DATASET_MAPPERS) - {"semantic"}))
def test_every_mask_mapper_validates_for_mask_former(name):
    cfg = build_cfg(str(QUICKSTART), ["INPUT.DATASET_MAPPER_NAME", name, "INPUT.IMAGE_SIZE", "0"])
    if name.endswith("_lsj"):
        with pytest.raises(ConfigError, match="INPUT.IMAGE_SIZE = 0"):
            validate_config(cfg, datasets=False)
    else:  # the scale keys are not read
        validate_config(cfg, datasets=False)
