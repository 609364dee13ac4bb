"""Panoptic and instance evaluation: the evaluators ``Trainer.build_evaluator`` picks for each
``evaluator_type`` and ``MODEL.MASK_FORMER.TEST.*_ON``, scoring hand-made predictions on tiny
fabricated data sets (PQ/SQ/RQ and mask AP computed by hand), and the start-up checks."""

import importlib.util
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.coco_panoptic import load_coco_panoptic_json
from detectron2.evaluation import COCOEvaluator, COCOPanopticEvaluator
from detectron2.structures import BitMasks, Instances
from PIL import Image

from semask.data.panoptic_labels import id_to_rgb, semantic_from_segments
from semask.engine import ConfigError, Trainer, build_cfg, validate_config
from semask.engine.num_classes import resolve_num_classes
from semask.instance_evaluation import THING_METADATA_SUFFIX, ThingInstanceEvaluator
from semask.report import SemSegReportEvaluator

QUICKSTART = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
HEIGHT, WIDTH = 6, 8
# COCO-style categories (data set ids not contiguous): contiguous ids sky 0, cat 1, dog 2, so the
# things are 1 and 2 among all 3 classes (as ADE20K's are spread over its 150).
CATEGORIES = [
    {"id": 2, "name": "sky", "isthing": 0, "color": [0, 0, 255]},
    {"id": 5, "name": "cat", "isthing": 1, "color": [255, 0, 0]},
    {"id": 9, "name": "dog", "isthing": 1, "color": [0, 255, 0]},
]
CONTIGUOUS = {c["id"]: i for i, c in enumerate(CATEGORIES)}
SKY, CAT, DOG = 0, 1, 2


def segment_map(rows: List[tuple]) -> np.ndarray:
    """Segment ids [HEIGHT, WIDTH] from (segment id, row slice, column slice) rectangles."""
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int32)
    for segment_id, r, c in rows:
        ids[r, c] = segment_id
    return ids


# Per image: segment ids and (segment id, contiguous class, iscrowd). Image 2 has void pixels.
GROUND_TRUTH = {
    1: (
        segment_map(
            [
                (1, slice(0, 2), slice(0, 8)),
                (2, slice(2, 6), slice(0, 4)),
                (3, slice(2, 6), slice(4, 8)),
            ]
        ),
        [(1, SKY, 0), (2, CAT, 0), (3, DOG, 0)],
    ),
    2: (
        segment_map([(1, slice(0, 3), slice(0, 8)), (4, slice(3, 6), slice(0, 6))]),
        [(1, SKY, 0), (4, CAT, 0)],
    ),
}


def write_data_set(root: Path) -> Dict[str, Path]:
    """Images, panoptic PNGs + JSON, semantic PNGs and a COCO instance JSON (RLE) of
    :data:`GROUND_TRUTH` under ``root``."""
    paths = {name: root / name for name in ("images", "panoptic", "semantic")}
    for path in paths.values():
        path.mkdir(parents=True)
    dataset_ids = {i: c["id"] for i, c in enumerate(CATEGORIES)}
    images, panoptic, instances = [], [], []
    for image_id, (ids, segments) in GROUND_TRUTH.items():
        stem = f"image{image_id}"
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 40 * image_id, np.uint8)).save(
            paths["images"] / f"{stem}.jpg"
        )
        Image.fromarray(id_to_rgb(ids)).save(paths["panoptic"] / f"{stem}.png")
        info = [{"id": s, "category_id": c} for s, c, _ in segments]
        Image.fromarray(semantic_from_segments(ids, info)).save(paths["semantic"] / f"{stem}.png")
        images.append(
            {"id": image_id, "file_name": f"{stem}.jpg", "height": HEIGHT, "width": WIDTH}
        )
        segments_info = []
        for segment_id, category, crowd in segments:
            rle = mask_util.encode(np.asfortranarray(ids == segment_id, dtype=np.uint8))
            area, bbox = int(mask_util.area(rle)), mask_util.toBbox(rle).tolist()
            segments_info.append(
                {
                    "id": segment_id,
                    "category_id": dataset_ids[category],
                    "iscrowd": crowd,
                    "area": area,
                    "bbox": bbox,
                }
            )
            if category != SKY:
                rle["counts"] = rle["counts"].decode("ascii")
                instances.append(
                    {
                        "id": len(instances) + 1,
                        "image_id": image_id,
                        "segmentation": rle,
                        "category_id": dataset_ids[category],
                        "iscrowd": crowd,
                        "area": area,
                        "bbox": bbox,
                    }
                )
        panoptic.append(
            {"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments_info}
        )
    categories = [{k: c[k] for k in ("id", "name", "isthing", "color")} for c in CATEGORIES]
    paths["panoptic_json"] = root / "panoptic.json"
    paths["panoptic_json"].write_text(
        json.dumps({"images": images, "annotations": panoptic, "categories": categories})
    )
    things = [{"id": c["id"], "name": c["name"]} for c in CATEGORIES if c["isthing"]]
    paths["instances_json"] = root / "instances.json"
    paths["instances_json"].write_text(
        json.dumps({"images": images, "annotations": instances, "categories": things})
    )
    return paths


def panoptic_metadata(paths: Dict[str, Path], evaluator_type: str) -> dict:
    """The shared contract's panoptic metadata (stuff_* over all classes)."""
    return {
        "thing_classes": [c["name"] for c in CATEGORIES if c["isthing"]],
        "thing_colors": [c["color"] for c in CATEGORIES if c["isthing"]],
        "stuff_classes": [c["name"] for c in CATEGORIES],
        "stuff_colors": [c["color"] for c in CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: CONTIGUOUS[c["id"]] for c in CATEGORIES if c["isthing"]
        },
        "stuff_dataset_id_to_contiguous_id": dict(CONTIGUOUS),
        "panoptic_root": str(paths["panoptic"]),
        "panoptic_json": str(paths["panoptic_json"]),
        "image_root": str(paths["images"]),
        "evaluator_type": evaluator_type,
        "ignore_label": 255,
        "label_divisor": 1000,
    }


@pytest.fixture
def data_sets(tmp_path, request):
    """Register the fabricated set as panoptic (COCO and ADE20K types, with and without semantic
    label maps), instance ("coco") and unknown-type data sets; name -> its test name."""
    paths = write_data_set(tmp_path / "data")
    prefix = f"univ_eval_{request.node.originalname}"
    names = {}

    def register_panoptic(key: str, evaluator_type: str, sem_seg: bool) -> None:
        name = names[key] = f"{prefix}_{key}"
        metadata = panoptic_metadata(paths, evaluator_type)

        def load() -> List[dict]:
            records = load_coco_panoptic_json(
                str(paths["panoptic_json"]),
                str(paths["images"]),
                str(paths["panoptic"]),
                metadata,
            )
            for record in records if sem_seg else []:
                stem = Path(record["file_name"]).stem
                record["sem_seg_file_name"] = str(paths["semantic"] / f"{stem}.png")
            return records

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(**metadata)

    register_panoptic("coco_panoptic", "coco_panoptic_seg", sem_seg=True)
    register_panoptic("coco_panoptic_no_sem", "coco_panoptic_seg", sem_seg=False)
    register_panoptic("ade20k_panoptic", "ade20k_panoptic_seg", sem_seg=True)
    register_panoptic("ade20k_panoptic_no_sem", "ade20k_panoptic_seg", sem_seg=False)
    names["instances"] = f"{prefix}_instances"
    things = [c for c in CATEGORIES if c["isthing"]]
    register_coco_instances(
        names["instances"],
        {
            "thing_classes": [c["name"] for c in things],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        },
        str(paths["instances_json"]),
        str(paths["images"]),
    )
    names["semantic"] = f"{prefix}_semantic"
    sem_records = [
        {"file_name": r["file_name"], "sem_seg_file_name": r["sem_seg_file_name"]}
        for r in DatasetCatalog.get(names["coco_panoptic"])
    ]
    DatasetCatalog.register(names["semantic"], lambda: sem_records)
    MetadataCatalog.get(names["semantic"]).set(
        stuff_classes=[c["name"] for c in CATEGORIES], ignore_label=255, evaluator_type="sem_seg"
    )
    names["lvis"] = f"{prefix}_lvis"
    DatasetCatalog.register(names["lvis"], lambda: [])
    MetadataCatalog.get(names["lvis"]).set(evaluator_type="lvis")
    yield names
    for name in names.values():
        DatasetCatalog.remove(name)
        for metadata_name in (name, name + THING_METADATA_SUFFIX):
            MetadataCatalog.pop(metadata_name, None)


def config(tmp_path, semantic=False, panoptic=False, instance=False, report=False):
    cfg = semask_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = len(CATEGORIES)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = semantic
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = panoptic
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = instance
    cfg.TEST.REPORT.ENABLED = report
    return cfg


def evaluate(evaluator, records: List[dict], outputs: List[dict]) -> dict:
    evaluator.reset()
    evaluator.process(records, outputs)
    return evaluator.evaluate()


def panoptic_output(ids: np.ndarray, segments: List[tuple]) -> tuple:
    """The model's ``panoptic_seg``: ids int32 [H, W] and segments_info (contiguous classes)."""
    info = [{"id": s, "category_id": c, "isthing": c != SKY} for s, c, *_ in segments]
    return torch.from_numpy(ids), info


def instances_output(masks: List[np.ndarray], classes: List[int]) -> Instances:
    """The model's ``instances``: binary masks [N, H, W], boxes, scores 1, classes."""
    instances = Instances((HEIGHT, WIDTH))
    stacked = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, HEIGHT, WIDTH)
    instances.pred_masks = stacked.float()
    instances.pred_boxes = BitMasks(stacked.bool()).get_bounding_boxes()
    instances.scores = torch.ones(len(masks))
    instances.pred_classes = torch.tensor(classes, dtype=torch.long)
    return instances


def perfect_outputs(image_ids: List[int], with_stuff_instance: bool = True) -> List[dict]:
    """sem_seg scores, panoptic_seg and instances equal to the ground truth; the instances also
    hold a stuff-class (sky) detection, which instance evaluation must ignore."""
    outputs = []
    for image_id in image_ids:
        ids, segments = GROUND_TRUTH[image_id]
        info = [{"id": s, "category_id": c} for s, c, _ in segments]
        semantic = torch.from_numpy(semantic_from_segments(ids, info).astype(np.int64))
        scores = torch.nn.functional.one_hot(semantic.clamp(max=len(CATEGORIES)), 4)[..., :3]
        things = [(ids == s, c) for s, c, _ in segments if c != SKY]
        if with_stuff_instance:
            things.append((ids == 1, SKY))
        outputs.append(
            {
                "sem_seg": scores.permute(2, 0, 1).float(),
                "panoptic_seg": panoptic_output(ids, segments),
                "instances": instances_output([m for m, _ in things], [c for _, c in things]),
            }
        )
    return outputs


@pytest.mark.parametrize(
    "key, flags, expected",
    [
        (
            "coco_panoptic",
            (True, True, True),
            [SemSegReportEvaluator, COCOPanopticEvaluator, ThingInstanceEvaluator],
        ),
        ("coco_panoptic_no_sem", (True, True, False), [COCOPanopticEvaluator]),
        ("ade20k_panoptic", (True, False, False), [SemSegReportEvaluator]),
        ("ade20k_panoptic_no_sem", (False, False, True), [ThingInstanceEvaluator]),
        ("ade20k_panoptic", (False, True, True), [COCOPanopticEvaluator, ThingInstanceEvaluator]),
        ("instances", (True, False, True), [COCOEvaluator]),
        ("semantic", (True, True, True), [SemSegReportEvaluator]),
    ],
)
def test_evaluators_by_type_and_outputs(data_sets, tmp_path, key, flags, expected):
    cfg = config(tmp_path, *flags, report=True)
    evaluators = Trainer.build_evaluator(cfg, data_sets[key])._evaluators
    assert [type(e) for e in evaluators] == expected
    if COCOEvaluator in expected:
        assert evaluators[0]._tasks == ("segm",) and not evaluators[0]._use_fast_impl


@pytest.mark.parametrize(
    "key, flags, expected",
    [
        (
            "instances",
            (True, True, False),
            "(evaluator_type 'coco') is scored on instances: it "
            "needs MODEL.MASK_FORMER.TEST.INSTANCE_ON True",
        ),
        (
            "coco_panoptic_no_sem",
            (True, False, False),
            "(evaluator_type 'coco_panoptic_seg') has "
            "nothing to score: enable MODEL.MASK_FORMER.TEST.PANOPTIC_ON or INSTANCE_ON",
        ),
        (
            "ade20k_panoptic",
            (False, False, False),
            "(evaluator_type 'ade20k_panoptic_seg') has " "nothing to score",
        ),
        (
            "lvis",
            (True, True, True),
            "no evaluator for data set '{name}' (evaluator_type 'lvis'); "
            "known evaluator types: ['sem_seg', 'cityscapes_sem_seg', 'coco_panoptic_seg'",
        ),
    ],
)
def test_no_applicable_evaluator_names_the_data_set(data_sets, tmp_path, key, flags, expected):
    name = data_sets[key]
    with pytest.raises(ValueError) as error:
        Trainer.build_evaluator(config(tmp_path, *flags), name)
    assert f"data set {name!r}" in str(error.value)
    assert expected.format(name=name) in str(error.value)


def test_missing_panopticapi_says_how_to_install(data_sets, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "panopticapi", None)
    monkeypatch.setitem(sys.modules, "panopticapi.evaluation", None)
    with pytest.raises(
        ImportError, match=r"needs panopticapi: pip install --no-deps panopticapi-lite"
    ):
        Trainer.build_evaluator(config(tmp_path, panoptic=True), data_sets["coco_panoptic"])


@pytest.mark.parametrize("key", ["coco_panoptic", "ade20k_panoptic"])
def test_perfect_predictions_score_100_on_every_task(data_sets, tmp_path, key):
    name = data_sets[key]
    cfg = config(tmp_path, semantic=True, panoptic=True, instance=True)
    records = DatasetCatalog.get(name)
    outputs = perfect_outputs([r["image_id"] for r in records])
    results = evaluate(Trainer.build_evaluator(cfg, name), records, outputs)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100)
    for metric in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"):
        assert results["panoptic_seg"][metric] == pytest.approx(100), metric
    for metric in ("AP", "AP50", "AP75", "AP-cat", "AP-dog"):
        assert results["segm"][metric] == pytest.approx(100), metric


def test_partial_panoptic_prediction_pq_by_hand(data_sets, tmp_path):
    """Image 1: sky exact, cat predicted over 12 of its 16 pixels (IoU 12/16), dog over its 16
    and 4 of the cat's (IoU 16/20); image 2: sky exact, the cat predicted as a dog (a false
    negative cat and a false positive dog)."""
    name = data_sets["coco_panoptic_no_sem"]
    records = DatasetCatalog.get(name)
    predicted = {
        1: segment_map(
            [
                (1, slice(0, 2), slice(0, 8)),
                (2, slice(2, 6), slice(0, 3)),
                (3, slice(2, 6), slice(3, 8)),
            ]
        ),
        2: segment_map([(1, slice(0, 3), slice(0, 8)), (2, slice(3, 6), slice(0, 6))]),
    }
    segments = {1: [(1, SKY), (2, CAT), (3, DOG)], 2: [(1, SKY), (2, DOG)]}
    outputs = [
        {"panoptic_seg": panoptic_output(predicted[r["image_id"]], segments[r["image_id"]])}
        for r in records
    ]
    results = evaluate(
        Trainer.build_evaluator(config(tmp_path, panoptic=True), name), records, outputs
    )
    # Per class (IoU sum, TP, FP, FN): sky (2, 2, 0, 0), cat (12/16, 1, 0, 1), dog (16/20, 1, 1, 0).
    stats = {SKY: (2.0, 2, 0, 0), CAT: (12 / 16, 1, 0, 1), DOG: (16 / 20, 1, 1, 0)}
    pq = {c: iou / (tp + (fp + fn) / 2) for c, (iou, tp, fp, fn) in stats.items()}
    sq = {c: iou / tp for c, (iou, tp, fp, fn) in stats.items()}
    rq = {c: tp / (tp + (fp + fn) / 2) for c, (iou, tp, fp, fn) in stats.items()}
    panoptic = results["panoptic_seg"]
    for metric, per_class in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
        assert panoptic[metric] == pytest.approx(100 * np.mean(list(per_class.values())))
        assert panoptic[f"{metric}_th"] == pytest.approx(
            100 * (per_class[CAT] + per_class[DOG]) / 2
        )
        assert panoptic[f"{metric}_st"] == pytest.approx(100 * per_class[SKY])


def test_partial_instance_prediction_ap_by_hand(data_sets, tmp_path):
    """Only image 1's cat and dog are found (exact masks): dog AP 100; cat recall reaches 1/2 at
    precision 1, which COCO's 101 recall points (0, 0.01, ..., 1) count 51 times."""
    name = data_sets["ade20k_panoptic_no_sem"]
    records = DatasetCatalog.get(name)
    ids = GROUND_TRUTH[1][0]
    found = {1: instances_output([ids == 2, ids == 3], [CAT, DOG]), 2: instances_output([], [])}
    outputs = [{"instances": found[r["image_id"]]} for r in records]
    evaluator = Trainer.build_evaluator(config(tmp_path, instance=True), name)
    segm = evaluate(evaluator, records, outputs)["segm"]
    assert segm["AP-dog"] == pytest.approx(100)
    assert segm["AP-cat"] == pytest.approx(100 * 51 / 101)
    assert segm["AP"] == pytest.approx((100 + 100 * 51 / 101) / 2)


def test_instances_derived_from_panoptic_pngs_match_the_coco_annotations(data_sets, tmp_path):
    name = data_sets["ade20k_panoptic_no_sem"]
    ThingInstanceEvaluator(name, str(tmp_path / "output"))
    derived_file = MetadataCatalog.get(name + THING_METADATA_SUFFIX).json_file
    derived = json.loads(Path(derived_file).read_text())
    instances_file = MetadataCatalog.get(data_sets["instances"]).json_file
    expected = json.loads(Path(instances_file).read_text())
    assert derived["categories"] == expected["categories"]
    fields = ("image_id", "category_id", "iscrowd", "area", "bbox", "segmentation")
    assert [{k: a[k] for k in fields} for a in derived["annotations"]] == [
        {k: a[k] for k in fields} for a in expected["annotations"]
    ]
    assert "json_file" not in MetadataCatalog.get(name).as_dict()  # the data set's own is kept


def test_instance_data_set_perfect_prediction(data_sets, tmp_path):
    name = data_sets["instances"]
    records = DatasetCatalog.get(name)
    outputs = []
    for record in records:
        ids, segments = GROUND_TRUTH[record["image_id"]]
        things = [(ids == s, c - 1) for s, c, _ in segments if c != SKY]  # thing ids 0..T-1
        outputs.append(
            {"instances": instances_output([m for m, _ in things], [c for _, c in things])}
        )
    evaluator = Trainer.build_evaluator(config(tmp_path, instance=True), name)
    segm = evaluate(evaluator, records, outputs)["segm"]
    assert segm["AP"] == pytest.approx(100) and segm["AP-cat"] == pytest.approx(100)
    assert "bbox" not in evaluator._evaluators[0]._results


def test_test_loader_reads_panoptic_records_without_semantic_labels(data_sets, tmp_path):
    cfg = config(tmp_path, panoptic=True)
    cfg.INPUT.MIN_SIZE_TEST = 0
    cfg.DATALOADER.NUM_WORKERS = 0
    batches = list(Trainer.build_test_loader(cfg, data_sets["coco_panoptic_no_sem"]))
    assert [b[0]["image"].shape for b in batches] == [(3, HEIGHT, WIDTH)] * 2
    assert all("sem_seg_file_name" not in b[0] for b in batches)


def test_instance_data_set_classes_are_its_things(data_sets, tmp_path):
    cfg = config(tmp_path, instance=True)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 0
    cfg.DATASETS.TRAIN = (data_sets["instances"],)
    resolve_num_classes(cfg)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 2


def quickstart_config(tmp_path, train: str, test: tuple, **outputs):
    """The quick-start model's config on the fabricated data sets."""
    cfg = build_cfg(str(QUICKSTART), ["OUTPUT_DIR", str(tmp_path / "output")])
    cfg.defrost()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = len(CATEGORIES)
    for key, on in outputs.items():
        cfg.MODEL.MASK_FORMER.TEST[f"{key.upper()}_ON"] = on
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (train,), test
    return cfg


def validation_message(cfg) -> str:
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    return str(error.value)


def test_validation_accepts_panoptic_and_instance_test_sets(data_sets, tmp_path):
    test = (data_sets["ade20k_panoptic"], data_sets["coco_panoptic_no_sem"])
    cfg = quickstart_config(tmp_path, data_sets["ade20k_panoptic"], test, panoptic=True)
    validate_config(cfg)


def test_validation_refuses_test_sets_with_nothing_to_score(data_sets, tmp_path):
    test = (data_sets["instances"], data_sets["lvis"])
    cfg = quickstart_config(tmp_path, data_sets["ade20k_panoptic"], test, semantic=True)
    text = validation_message(cfg)
    assert f"DATASETS.TEST = {data_sets['instances']!r}: data set" in text
    assert "it needs MODEL.MASK_FORMER.TEST.INSTANCE_ON True" in text
    assert f"no evaluator for data set {data_sets['lvis']!r} (evaluator_type 'lvis')" in text
    assert f"data set {data_sets['instances']!r} (DATASETS.TEST) has 2 classes" in text


def test_validation_names_a_missing_panopticapi_where_pq_is_scored(
    data_sets, tmp_path, monkeypatch
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "panopticapi" else find_spec(name, *args),
    )
    name = data_sets["coco_panoptic"]
    cfg = quickstart_config(tmp_path, name, (name,), semantic=True, instance=True)
    validate_config(cfg)  # no PQ: panopticapi is not needed
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    assert (
        f"DATASETS.TEST = {name!r}: data set {name!r} is scored with PQ "
        "(MODEL.MASK_FORMER.TEST.PANOPTIC_ON), which needs panopticapi (not installed): "
        "pip install --no-deps panopticapi-lite"
    ) in validation_message(cfg)


@pytest.mark.parametrize(
    "opts, expected",
    [
        (["MODEL.META_ARCHITECTURE", "SeMaskFPN"], "must be False for SeMaskFPN: only "),
        (["TEST.AUG.ENABLED", True], "must be False with TEST.AUG.ENABLED"),
    ],
)
def test_panoptic_outputs_need_a_mask_classification_model_without_tta(
    data_sets, tmp_path, opts, expected
):
    name = data_sets["coco_panoptic"]
    cfg = quickstart_config(tmp_path, name, (name,), panoptic=True, instance=True)
    cfg.merge_from_list(opts)
    text = validation_message(cfg)
    for key in ("PANOPTIC_ON", "INSTANCE_ON"):
        assert f"MODEL.MASK_FORMER.TEST.{key} = True: {expected}" in text
