"""One target path: SeMaskMaskFormer trains on the mapper's ``instances`` (masks and classes) and
on its ``sem_seg`` (the prior loss), each padded to the batch."""

import cv2
import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from semask.data import MaskFormerSemanticDatasetMapper
from semask.data.targets import padded_instance_targets, semantic_instances

K = 7  # classes of the reference micro model
SET_LOSSES = ("loss_ce", "loss_mask", "loss_dice")


def test_semantic_instances_are_one_mask_per_class_present_ascending():
    sem_seg = torch.tensor([[3, 3, 255], [0, 5, 5]])
    instances = semantic_instances(sem_seg)
    assert instances.image_size == (2, 3)
    assert instances.gt_classes.tolist() == [0, 3, 5]
    assert instances.gt_classes.dtype == torch.int64
    assert isinstance(instances.gt_masks, BitMasks)
    masks = instances.gt_masks.tensor
    assert masks.dtype == torch.bool
    assert masks.tolist() == [
        [[False, False, False], [True, False, False]],
        [[True, True, False], [False, False, False]],
        [[False, False, False], [False, True, True]],
    ]


@pytest.mark.parametrize("as_bitmasks", [True, False])
def test_padded_instance_targets_pad_masks_with_false(as_bitmasks):
    """Mask2Former's mappers give ``gt_masks`` as a tensor, detectron2's as BitMasks: both pad."""
    masks = torch.tensor([[[1, 0, 1], [1, 1, 1]]], dtype=torch.uint8)
    instances = Instances((2, 3))
    instances.gt_classes = torch.tensor([4], dtype=torch.int32)
    instances.gt_masks = BitMasks(masks.bool()) if as_bitmasks else masks
    labels, padded = padded_instance_targets(instances, (2, 3), (4, 5), torch.device("cpu"))
    assert labels.tolist() == [4] and labels.dtype == torch.int64
    assert padded.shape == (1, 4, 5) and padded.dtype == torch.bool
    assert torch.equal(padded[:, :2, :3], masks.bool())
    assert not padded[:, 2:].any() and not padded[:, :, 3:].any()


def test_padded_instance_targets_reject_masks_of_another_size():
    instances = semantic_instances(torch.zeros(4, 6, dtype=torch.int64))
    with pytest.raises(ValueError) as error:
        padded_instance_targets(instances, (4, 5), (8, 8), torch.device("cpu"))
    assert str(error.value) == (
        "instances.gt_masks are (4, 6) (height, width) but the image is (4, 5)"
    )


@pytest.fixture(scope="module")
def model(reference_dir):
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / "micro_msdeform_config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg).train()


def _losses(model, image, sem_seg, instances):
    torch.manual_seed(0)  # the same points are sampled for the same number of targets
    with torch.no_grad():
        return model([{"image": image, "sem_seg": sem_seg, "instances": instances}])


def _label_map():
    g = torch.Generator().manual_seed(0)
    sem_seg = torch.zeros(60, 90, dtype=torch.int64)
    sem_seg[:, 30:] = 2
    sem_seg[35:, 50:] = 5
    sem_seg[torch.rand(60, 90, generator=g) < 0.1] = 255
    return sem_seg


def test_mask_losses_follow_the_instances_and_the_prior_loss_follows_sem_seg(model):
    image = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)
    a = _label_map()
    b = a.flip(-1)  # the same classes, other masks
    given = _losses(model, image, a, semantic_instances(b))
    from_b = _losses(model, image, b, semantic_instances(b))
    from_a = _losses(model, image, a, semantic_instances(a))
    for key in given:
        if key.startswith(SET_LOSSES):
            torch.testing.assert_close(given[key], from_b[key], rtol=0, atol=0)
    torch.testing.assert_close(given["loss_cate"], from_a["loss_cate"], rtol=0, atol=0)
    assert given["loss_cate"] != from_b["loss_cate"]
    assert given["loss_mask"] != from_a["loss_mask"]
    assert given["loss_dice"] != from_a["loss_dice"]


def test_instances_of_a_class_not_in_sem_seg_are_trained_on(model):
    """Whatever the mapper gives (e.g. a panoptic mapper's instances) is the set target."""
    image = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)
    sem_seg = _label_map()
    instances = semantic_instances(sem_seg)
    relabelled = semantic_instances(sem_seg)
    relabelled.gt_classes = torch.tensor([1, 3, 6])  # other classes on the same masks
    given = _losses(model, image, sem_seg, relabelled)
    plain = _losses(model, image, sem_seg, instances)
    assert given["loss_ce"] != plain["loss_ce"]
    torch.testing.assert_close(given["loss_cate"], plain["loss_cate"], rtol=0, atol=0)


def test_missing_instances_name_the_key_and_the_mapper(model):
    image = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)
    with pytest.raises(KeyError) as error:
        model([{"image": image, "sem_seg": _label_map()}])
    assert error.value.args[0] == (
        "training input 0 has no 'instances' (gt_classes, gt_masks), the targets SeMaskMaskFormer "
        "trains on: use INPUT.DATASET_MAPPER_NAME 'mask_former_semantic' "
        "(MaskFormerSemanticDatasetMapper with_masks=True)"
    )


def _mapped(tmp_path, mapper_name):
    """A 50 x 70 sample through the training mapper selected by ``mapper_name``."""
    rng = np.random.default_rng(0)
    label = np.zeros((50, 70), np.uint8)
    label[:, 40:] = 3
    label[30:, :20] = 6
    cv2.imwrite(str(tmp_path / "image.png"), rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "label.png"), label)
    cfg = semask_cfg()
    cfg.DATASETS.TRAIN = ("quickstart_sem_seg_train",)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = K
    cfg.INPUT.MIN_SIZE_TRAIN = (50,)
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.DATASET_MAPPER_NAME = mapper_name
    mapper = MaskFormerSemanticDatasetMapper(cfg, True)
    return mapper(
        {
            "file_name": str(tmp_path / "image.png"),
            "sem_seg_file_name": str(tmp_path / "label.png"),
        }
    )


def test_the_model_trains_on_what_the_mapper_gives(tmp_path, model):
    sample = _mapped(tmp_path, "mask_former_semantic")
    assert sample["instances"].gt_classes.tolist() == [0, 3, 6]
    losses = _losses(model, sample["image"], sample["sem_seg"], sample["instances"])
    assert all(torch.isfinite(v) for v in losses.values())
    bare = _mapped(tmp_path, "semantic")
    assert "instances" not in bare and torch.equal(bare["sem_seg"], sample["sem_seg"])
    with pytest.raises(KeyError, match="INPUT.DATASET_MAPPER_NAME 'mask_former_semantic'"):
        model([bare])
