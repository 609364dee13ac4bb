"""MaskFormerSemanticDatasetMapper: augmentation, padding, per-class masks."""

import cv2
import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.data import transforms as T

from semask.data import MaskFormerSemanticDatasetMapper, build_semantic_augmentations

NUM_CLASSES = 8


def _write_sample(tmp_path, image, label):
    image_file = tmp_path / "image.jpg"
    label_file = tmp_path / "label.png"
    cv2.imwrite(str(image_file), image[..., ::-1])
    cv2.imwrite(str(label_file), label)
    return {
        "file_name": str(image_file),
        "sem_seg_file_name": str(label_file),
        "height": image.shape[0],
        "width": image.shape[1],
    }


def _mapper(augmentations, size_divisibility=-1, with_masks=True):
    return MaskFormerSemanticDatasetMapper(
        True,
        augmentations=augmentations,
        image_format="RGB",
        ignore_label=255,
        num_classes=NUM_CLASSES,
        size_divisibility=size_divisibility,
        with_masks=with_masks,
    )


def test_padding_uses_ignore_label_and_masks_match_labels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 45, 3), dtype=np.uint8)
    label = np.zeros((30, 45), np.uint8)
    label[5:20, 10:30] = 3
    label[22:, :] = 7
    label[0, 0] = 255
    out = _mapper([], size_divisibility=32)(_write_sample(tmp_path, image, label))

    assert out["image"].shape == (3, 32, 64) and out["image"].dtype == torch.uint8
    assert out["sem_seg"].shape == (32, 64) and out["sem_seg"].dtype == torch.int64
    assert torch.equal(out["sem_seg"][:30, :45], torch.from_numpy(label).long())
    assert (out["sem_seg"][30:] == 255).all() and (out["sem_seg"][:, 45:] == 255).all()
    assert (out["image"][:, 30:] == 128).all() and (out["image"][:, :, 45:] == 128).all()
    assert "sem_seg_file_name" not in out

    instances = out["instances"]
    assert instances.gt_classes.tolist() == [0, 3, 7]
    masks = instances.gt_masks.tensor
    assert masks.shape == (3, 32, 64)
    for cls, mask in zip(instances.gt_classes, masks):
        assert torch.equal(mask, out["sem_seg"] == cls)


def test_semantic_mapper_has_no_instances(tmp_path):
    image = np.full((32, 32, 3), 50, np.uint8)
    label = np.ones((32, 32), np.uint8)
    out = _mapper([], with_masks=False)(_write_sample(tmp_path, image, label))
    assert "instances" not in out and out["sem_seg"].shape == (32, 32)


def test_flip_moves_image_and_labels_together(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :8] = 250
    label = np.zeros((32, 32), np.uint8)
    label[:, :8] = 1
    out = _mapper([T.RandomFlip(prob=1.0)])(_write_sample(tmp_path, image, label))
    bright = out["image"][0] > 128
    assert torch.equal(bright, out["sem_seg"] == 1)
    assert (out["sem_seg"][:, 24:] == 1).all()


def _largest_class_fractions(tmp_path, max_area, seed=0):
    """Fractions of the largest class in 30 crops (32 x 32) of a half/half 64 x 64 label map."""
    np.random.seed(seed)
    label = np.zeros((64, 64), np.uint8)
    label[:, 32:] = 1
    sample = _write_sample(tmp_path, np.zeros((64, 64, 3), np.uint8), label)
    mapper = _mapper([T.RandomCrop_CategoryAreaConstraint("absolute", (32, 32), max_area, 255)])
    fractions = []
    for _ in range(30):
        sem_seg = mapper(sample)["sem_seg"]
        assert sem_seg.shape == (32, 32)
        fractions.append(torch.bincount(sem_seg.flatten()).max().item() / sem_seg.numel())
    return fractions


def test_crop_respects_single_category_max_area(tmp_path):
    assert max(_largest_class_fractions(tmp_path, 0.75)) < 0.75
    # Without the constraint, crops dominated by one class do occur.
    assert max(_largest_class_fractions(tmp_path, 1.0)) >= 0.75


def test_augmentations_from_config():
    cfg = semask_cfg()
    cfg.DATASETS.TRAIN = ("quickstart_sem_seg_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (48, 64)
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (64, 64)
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 0.75
    cfg.INPUT.COLOR_AUG_SSD = True
    import semask.data  # noqa: F401  (registers the quick-start set)

    augs = build_semantic_augmentations(cfg)
    names = [type(a).__name__ for a in augs]
    assert names == [
        "ResizeShortestEdge",
        "RandomCrop_CategoryAreaConstraint",
        "ColorAugSSDTransform",
        "RandomFlip",
    ]
    assert augs[1].single_category_max_area == 0.75 and augs[1].ignored_category == 255
    cfg.INPUT.DATASET_MAPPER_NAME = "panoptic"
    with pytest.raises(ValueError, match="DATASET_MAPPER_NAME"):
        MaskFormerSemanticDatasetMapper(cfg, True)


def test_rejects_missing_labels_and_inference_use(tmp_path):
    mapper = _mapper([])
    with pytest.raises(ValueError, match="sem_seg_file_name"):
        mapper({"file_name": "x.jpg", "height": 1, "width": 1})
    eval_mapper = MaskFormerSemanticDatasetMapper(
        False,
        augmentations=[],
        image_format="RGB",
        ignore_label=255,
        num_classes=NUM_CLASSES,
        size_divisibility=-1,
    )
    with pytest.raises(ValueError, match="training only"):
        eval_mapper({"file_name": "x.jpg"})
