"""MaskFormerSemanticDatasetMapper: augmentation, padding, per-class masks, label checks and the
bad-sample policy."""

import logging
import multiprocessing

import cloudpickle
import cv2
import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.data import build_detection_train_loader
from detectron2.data import transforms as T
from detectron2.data.samplers import TrainingSampler

from semask.data import (
    DataError,
    MaskFormerSemanticDatasetMapper,
    build_semantic_augmentations,
    training_bad_samples,
)
from semask.data.mapper import BadSampleCounter
from semask.engine.bad_samples import BadSampleReport

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
    for name, with_masks in (("mask_former_semantic", True), ("semantic", False)):
        cfg.INPUT.DATASET_MAPPER_NAME = name
        assert MaskFormerSemanticDatasetMapper(cfg, True).with_masks is with_masks
    cfg.INPUT.DATASET_MAPPER_NAME = "panoptic"
    with pytest.raises(ValueError) as error:
        MaskFormerSemanticDatasetMapper(cfg, True)
    assert str(error.value) == (
        "INPUT.DATASET_MAPPER_NAME must be one of ['mask_former_semantic', 'semantic'], "
        "got 'panoptic'"
    )


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


def test_label_of_another_size_names_both_files_and_sizes(tmp_path):
    sample = _write_sample(tmp_path, np.zeros((30, 40, 3), np.uint8), np.zeros((30, 40), np.uint8))
    cv2.imwrite(sample["sem_seg_file_name"], np.zeros((32, 40), np.uint8))
    with pytest.raises(DataError) as error:
        _mapper([])(sample)
    assert str(error.value) == (
        f"label map {sample['sem_seg_file_name']} is 40x32 (width x height) but its image "
        f"{sample['file_name']} is 40x30"
    )


def test_label_values_neither_class_nor_ignore_are_named(tmp_path):
    label = np.zeros((16, 16), np.uint8)
    label[0, :12] = [3, 8, 9, 200, 254, 255, 7, 10, 11, 12, 13, 14]
    sample = _write_sample(tmp_path, np.zeros((16, 16, 3), np.uint8), label)
    with pytest.raises(DataError) as error:
        _mapper([])(sample)
    assert str(error.value) == (
        f"label map {sample['sem_seg_file_name']} has values that are neither a class id 0..7 "
        "(MODEL.SEM_SEG_HEAD.NUM_CLASSES 8) nor the ignore label 255: "
        "8, 9, 10, 11, 12, 13, 14, 200, ... (9 values in all)"
    )


def _data_set(tmp_path, bad_index=3, count=5):
    """``count`` 16x16 samples, of which ``bad_index`` has a label map of another size."""
    records = []
    for i in range(count):
        folder = tmp_path / str(i)
        folder.mkdir()
        size = 20 if i == bad_index else 16
        label = np.full((size, 16), i % NUM_CLASSES, np.uint8)
        records.append(_write_sample(folder, np.full((16, 16, 3), 10 * i, np.uint8), label))
        del records[-1]["height"], records[-1]["width"]
    return records


def _loader(records, mapper):
    return build_detection_train_loader(
        dataset=records,
        mapper=mapper,
        sampler=TrainingSampler(len(records), shuffle=False),
        total_batch_size=2,
        aspect_ratio_grouping=False,
        num_workers=2,
    )


def test_error_policy_names_the_file_through_the_dataloader_workers(tmp_path):
    records = _data_set(tmp_path)
    with pytest.raises(DataError, match=f"label map {records[3]['sem_seg_file_name']} is 16x20"):
        for _ in zip(range(4), _loader(records, _mapper([]))):
            pass


def test_skip_policy_uses_the_rest_and_counts_across_workers(tmp_path, caplog):
    records = _data_set(tmp_path)
    mapper = MaskFormerSemanticDatasetMapper(
        True,
        augmentations=[],
        image_format="RGB",
        ignore_label=255,
        num_classes=NUM_CLASSES,
        size_divisibility=-1,
        bad_sample_policy="skip",
    )
    assert mapper.bad_samples is training_bad_samples()
    mapper.bad_samples.reset()
    used = set()
    for _, batch in zip(range(5), _loader(records, mapper)):
        used.update(item["file_name"] for item in batch)
    good = {r["file_name"] for i, r in enumerate(records) if i != 3}
    assert used == good
    skipped = training_bad_samples().count
    assert skipped >= 2  # both workers met the bad sample
    with caplog.at_level(logging.WARNING):
        BadSampleReport(training_bad_samples()).after_train()
    assert f"skipped {skipped} bad training samples (DATALOADER.BAD_SAMPLE_POLICY skip)" in (
        caplog.text
    )


def test_skip_count_reaches_spawned_processes_and_survives_cloudpickle():
    """DataLoader workers of spawned (gloo) training processes get the mapper through
    cloudpickle, as detectron2 serialises data sets: the count they add must reach the parent."""
    counter = BadSampleCounter()
    copy = cloudpickle.loads(cloudpickle.dumps(counter))
    copy.increment()
    child = multiprocessing.get_context("spawn").Process(target=counter.increment)
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert counter.count == 2
    counter.reset()
    assert copy.count == 0
