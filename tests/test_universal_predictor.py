"""SeMaskPredictor of a panoptic + instance SeMask Mask2Former (tiny, random weights): panoptic
segments and instances at the image's size next to the semantic labels."""

from typing import List

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from test_predictor import QUICKSTART_CONFIG, TINY_QUICKSTART

from semask.engine import build_cfg
from semask.predictor import SeMaskPredictor, resize_instances, resize_nearest, resize_panoptic

# Things are not numbered first (as in ADE20K): contiguous 1 and 3 of the 4 classes.
UNIVERSAL_DATASET = "predictor_test_universal"
CLASSES = ["sky", "cat", "road", "dog"]
COLORS = [[70, 130, 180], [220, 20, 60], [128, 64, 128], [0, 142, 0]]
THING_IDS = {11: 1, 13: 3}  # dataset id -> contiguous id
MetadataCatalog.get(UNIVERSAL_DATASET).set(
    stuff_classes=CLASSES,
    stuff_colors=COLORS,
    thing_classes=[CLASSES[c] for c in THING_IDS.values()],
    thing_colors=[COLORS[c] for c in THING_IDS.values()],
    thing_dataset_id_to_contiguous_id=THING_IDS,
    stuff_dataset_id_to_contiguous_id={10 + i: i for i in range(len(CLASSES))},
)


def universal_opts(panoptic: bool = True, semantic: bool = True) -> List[str]:
    """Overrides of the quick-start config for a tiny model of UNIVERSAL_DATASET that infers
    instances (the best 4), and panoptic and semantic segmentation if asked; every query is kept
    for panoptic segmentation."""
    return TINY_QUICKSTART + [
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        str(len(CLASSES)),
        "DATASETS.TRAIN",
        f"('{UNIVERSAL_DATASET}',)",
        "DATASETS.TEST",
        f"('{UNIVERSAL_DATASET}',)",
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON",
        str(semantic),
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON",
        str(panoptic),
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON",
        "True",
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD",
        "0.0",
        "TEST.DETECTIONS_PER_IMAGE",
        "4",
    ]


def universal_weights(path) -> List[str]:
    """Write random weights of the tiny universal model to ``path``; its overrides, with them."""
    torch.manual_seed(0)
    model = build_model(build_cfg(str(QUICKSTART_CONFIG), universal_opts()))
    torch.save({"model": model.state_dict()}, path)
    return universal_opts() + ["MODEL.WEIGHTS", str(path)]


@pytest.fixture(scope="module")
def weights_opts(tmp_path_factory) -> List[str]:
    return universal_weights(tmp_path_factory.mktemp("universal") / "tiny.pth")


@pytest.fixture(scope="module")
def predictor(weights_opts) -> SeMaskPredictor:
    return SeMaskPredictor(build_cfg(str(QUICKSTART_CONFIG), weights_opts), return_priors=True)


def random_image(height: int = 50, width: int = 70) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_panoptic_segments_are_at_the_image_size(predictor):
    prediction = predictor.predict(random_image())
    ids, segments_info = prediction.panoptic_seg
    assert ids.shape == (50, 70) and ids.dtype == torch.int32
    assert segments_info, "the tiny model keeps every query: it must find segments"
    for segment in segments_info:
        assert set(segment) == {"id", "category_id", "isthing", "area"}
        assert segment["isthing"] == (segment["category_id"] in THING_IDS.values())
        assert segment["area"] == int((ids == segment["id"]).sum()) > 0
    assert set(ids.unique().tolist()) <= {0} | {s["id"] for s in segments_info}
    # The model's segments at the test resize (96 x 134), enlarged by nearest neighbour.
    item = predictor.model_inputs(random_image())
    item["height"], item["width"] = item["image"].shape[1:]
    with torch.no_grad():
        output = predictor.model([item])[0]
    assert output["panoptic_seg"][0].shape == (96, 134)
    assert torch.equal(ids, resize_nearest(output["panoptic_seg"][0], 50, 70))
    # Semantic outputs and priors as for a semantic-only model.
    assert prediction.scores.shape == (len(CLASSES), 96, 134)
    assert prediction.labels.shape == (50, 70)
    assert prediction.sem_prior.shape == (len(CLASSES), 96, 134)


def test_instances_are_at_the_image_size(predictor):
    instances = predictor.predict(random_image()).instances
    assert isinstance(instances, Instances) and instances.image_size == (50, 70)
    assert len(instances) > 0
    assert instances.pred_masks.shape == (len(instances), 50, 70)
    assert instances.pred_masks.dtype == torch.bool
    assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
    # A panoptic model's instances are things only.
    assert set(instances.pred_classes.tolist()) <= set(THING_IDS.values())
    boxes = BitMasks(instances.pred_masks).get_bounding_boxes()
    assert torch.equal(instances.pred_boxes.tensor, boxes.tensor)


def test_an_instance_model_without_semantic_output_has_no_labels(weights_opts):
    opts = weights_opts + universal_opts(panoptic=False, semantic=False)
    prediction = SeMaskPredictor(build_cfg(str(QUICKSTART_CONFIG), opts)).predict(random_image())
    assert prediction.scores is None and prediction.labels is None
    assert prediction.panoptic_seg is None
    assert prediction.instances.image_size == (50, 70)


def test_a_semantic_model_has_no_panoptic_or_instance_output():
    predictor = SeMaskPredictor(build_cfg(str(QUICKSTART_CONFIG), TINY_QUICKSTART))
    prediction = predictor.predict(random_image())
    assert prediction.panoptic_seg is None and prediction.instances is None
    assert prediction.labels.shape == (50, 70)


def test_resize_nearest_is_opencvs_nearest_for_any_dtype():
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 9, (7, 11), dtype=np.int32))
    for height, width in ((7, 11), (20, 30), (3, 4), (13, 5)):
        expected = cv2.resize(labels.numpy(), (width, height), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(resize_nearest(labels, height, width).numpy(), expected)
        masks = torch.stack([labels == 1, labels == 2])
        assert torch.equal(resize_nearest(masks, height, width)[1], torch.from_numpy(expected == 2))
    enlarged = F.interpolate(labels[None, None].float(), (20, 30), mode="nearest")[0, 0]
    assert torch.equal(resize_nearest(labels, 20, 30), enlarged.int())


def test_segments_lost_in_resizing_are_dropped_and_areas_counted():
    ids = torch.ones(8, 8, dtype=torch.int32)
    ids[3, 3] = 2  # a one-pixel segment: gone at half size
    ids[4:, 4:] = 3
    segments_info = [{"id": i, "category_id": i, "isthing": i == 3} for i in (1, 2, 3)]
    resized, kept = resize_panoptic((ids, segments_info), 4, 4)
    assert resized.shape == (4, 4)
    assert kept == [
        {"id": 1, "category_id": 1, "isthing": False, "area": 12},
        {"id": 3, "category_id": 3, "isthing": True, "area": 4},
    ]
    assert "area" not in segments_info[0]  # the model's segments are left as they are


def test_resized_instances_have_bool_masks_and_enclosing_boxes():
    masks = torch.zeros(2, 4, 6)
    masks[0, 1:3, 2:4] = 1.0
    instances = Instances((4, 6))
    instances.pred_masks = masks
    instances.pred_boxes = Boxes(torch.zeros(2, 4))
    instances.scores = torch.tensor([0.9, 0.1])
    instances.pred_classes = torch.tensor([1, 3])
    resized = resize_instances(instances, 8, 12)
    assert resized.image_size == (8, 12) and resized.pred_masks.dtype == torch.bool
    assert resized.pred_masks[0].sum() == 16 and not resized.pred_masks[1].any()
    assert resized.pred_boxes.tensor.tolist() == [[4.0, 2.0, 8.0, 6.0], [0.0, 0.0, 0.0, 0.0]]
    assert torch.equal(resized.scores, instances.scores)
    assert torch.equal(resized.pred_classes, instances.pred_classes)
