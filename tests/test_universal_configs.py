"""The COCO and ADE20K panoptic / instance configs: Mask2Former's published recipes, with SeMask's
semantic layer, and plain Swin baselines that differ from them in the semantic branch only."""

from pathlib import Path
from typing import Any, Dict

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import semask.data  # noqa: F401  (registers the data sets)
from semask.config import config_value

CONFIG_DIR = REPO_ROOT / "configs"
TASKS = [
    "coco/panoptic-segmentation",
    "coco/instance-segmentation",
    "ade20k/panoptic-segmentation",
    "ade20k/instance-segmentation",
]
LEAVES = sorted(
    p.relative_to(CONFIG_DIR).as_posix()
    for task in TASKS
    for p in (CONFIG_DIR / task).glob("*.yaml")
    if not p.name.startswith("Base-")
)
SEMASK_LEAVES = [name for name in LEAVES if Path(name).name.startswith("semask_")]
# The two keys by which a plain Swin baseline differs from its SeMask config.
SEMANTIC_BRANCH = {"MODEL.BACKBONE.NAME", "MODEL.MASK_FORMER.CATE_WEIGHT"}

# Mask2Former's configs: shared by every task ...
SHARED = {
    "MODEL.META_ARCHITECTURE": "SeMaskMaskFormer",
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": "MSDeformAttnPixelDecoder",
    "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME": "MultiScaleMaskedTransformerDecoder",
    "MODEL.MASK_FORMER.DEC_LAYERS": 10,
    "MODEL.MASK_FORMER.CLASS_WEIGHT": 2.0,
    "MODEL.MASK_FORMER.MASK_WEIGHT": 5.0,
    "MODEL.MASK_FORMER.DICE_WEIGHT": 5.0,
    "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT": 0.1,
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS": 12544,
    "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD": 0.8,
    "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD": 0.8,
    "TEST.DETECTIONS_PER_IMAGE": 100,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.OPTIMIZER": "ADAMW",
    "SOLVER.BASE_LR": 1e-4,
    "SOLVER.WEIGHT_DECAY": 0.05,
    "SOLVER.BACKBONE_MULTIPLIER": 0.1,
    "SOLVER.WARMUP_FACTOR": 1.0,
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 0.01,
    "SOLVER.AMP.ENABLED": True,
    "INPUT.FORMAT": "RGB",
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": True,
}
# ... by every config of a data set ...
DATASET_RECIPES = {
    "coco": {
        "INPUT.IMAGE_SIZE": 1024,
        "INPUT.MIN_SCALE": 0.1,
        "INPUT.MAX_SCALE": 2.0,
        "INPUT.CROP.ENABLED": False,
        "INPUT.COLOR_AUG_SSD": False,
        "INPUT.SIZE_DIVISIBILITY": -1,
        "INPUT.MIN_SIZE_TEST": 800,
        "INPUT.MAX_SIZE_TEST": 1333,
        "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
        "SOLVER.WARMUP_ITERS": 10,
    },
    "ade20k": {
        "INPUT.MIN_SIZE_TRAIN": [int(x * 0.1 * 640) for x in range(5, 21)],
        "INPUT.MAX_SIZE_TRAIN": 2560,
        "INPUT.MIN_SIZE_TEST": 640,
        "INPUT.MAX_SIZE_TEST": 2560,
        "INPUT.CROP.ENABLED": True,
        "INPUT.CROP.SIZE": [640, 640],
        "INPUT.SIZE_DIVISIBILITY": 640,
        "INPUT.COLOR_AUG_SSD": True,
        "TEST.AUG.MIN_SIZES": [320, 480, 640, 800, 960, 1120],
        "TEST.AUG.MAX_SIZE": 4480,
        "SOLVER.LR_SCHEDULER_NAME": "WarmupPolyLR",
        "SOLVER.MAX_ITER": 160000,
        "SOLVER.WARMUP_ITERS": 0,
    },
}
# ... by every config of a task (semantic, instance, panoptic outputs at test time) ...
TASK_RECIPES = {
    "coco/panoptic-segmentation": ("coco_panoptic_lsj", 133, (True, True, True)),
    "coco/instance-segmentation": ("coco_instance_lsj", 80, (False, True, False)),
    "ade20k/panoptic-segmentation": ("mask_former_panoptic", 150, (True, True, True)),
    "ade20k/instance-segmentation": ("mask_former_instance", 100, (False, True, False)),
}
# ... and by backbone size (COCO's Swin-L trains 100 epochs instead of 50).
SIZE_RECIPES = {
    "tiny": {
        "MODEL.SWIN.EMBED_DIM": 96,
        "MODEL.SWIN.DEPTHS": [2, 2, 6, 2],
        "MODEL.SWIN.NUM_HEADS": [3, 6, 12, 24],
        "MODEL.SWIN.WINDOW_SIZE": 7,
        "MODEL.SWIN.PRETRAIN_IMG_SIZE": 224,
        "MODEL.WEIGHTS": "swin_tiny_patch4_window7_224.pkl",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 100,
    },
    "large": {
        "MODEL.SWIN.EMBED_DIM": 192,
        "MODEL.SWIN.DEPTHS": [2, 2, 18, 2],
        "MODEL.SWIN.NUM_HEADS": [6, 12, 24, 48],
        "MODEL.SWIN.WINDOW_SIZE": 12,
        "MODEL.SWIN.PRETRAIN_IMG_SIZE": 384,
        "MODEL.WEIGHTS": "swin_large_patch4_window12_384_22k.pkl",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 200,
    },
}
COCO_SCHEDULES = {
    "tiny": {"SOLVER.MAX_ITER": 368750, "SOLVER.STEPS": [327778, 355092]},
    "large": {"SOLVER.MAX_ITER": 737500, "SOLVER.STEPS": [655556, 710184]},
}


def load(name: str) -> CfgNode:
    cfg = semask_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / name))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    """Every leaf value of a config, by dotted key."""
    if not isinstance(node, dict):
        return {prefix: node}
    items = {}
    for key, value in node.items():
        items.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return items


def published(name: str) -> Dict[str, Any]:
    """The dotted keys and values Mask2Former's config of the same task and backbone sets."""
    task = str(Path(name).parent)
    dataset = task.split("/")[0]
    size = "large" if "_large_" in name else "tiny"
    mapper, classes, (semantic, instance, panoptic) = TASK_RECIPES[task]
    recipe = {**SHARED, **DATASET_RECIPES[dataset], **SIZE_RECIPES[size]}
    if dataset == "coco":
        recipe.update(COCO_SCHEDULES[size])
    recipe.update(
        {
            "INPUT.DATASET_MAPPER_NAME": mapper,
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES": classes,
            "MODEL.MASK_FORMER.TEST.SEMANTIC_ON": semantic,
            "MODEL.MASK_FORMER.TEST.INSTANCE_ON": instance,
            "MODEL.MASK_FORMER.TEST.PANOPTIC_ON": panoptic,
        }
    )
    return recipe


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def test_every_task_has_semask_and_plain_swin_t_and_swin_l():
    for task in TASKS:
        names = sorted(Path(name).name for name in LEAVES if name.startswith(f"{task}/"))
        tiny, large = ("50ep", "100ep") if task.startswith("coco/") else ("160k_res640",) * 2
        assert names == [
            f"semask_swin_large_IN21k_384_bs16_{large}.yaml",
            f"semask_swin_tiny_bs16_{tiny}.yaml",
            f"swin_large_IN21k_384_bs16_{large}.yaml",
            f"swin_tiny_bs16_{tiny}.yaml",
        ], task


@pytest.mark.parametrize("name", LEAVES)
def test_leaf_follows_the_published_recipe(name):
    cfg = load(name)
    for key, value in published(name).items():
        assert _plain(config_value(cfg, key)) == value, f"{name}: {key}"


@pytest.mark.parametrize("name", SEMASK_LEAVES)
def test_semask_leaf_adds_the_published_semantic_layer(name):
    cfg = load(name)
    assert cfg.MODEL.BACKBONE.NAME == "D2SeMaskSwinTransformer"
    assert (cfg.MODEL.SWIN.NUM_SEM_BLOCKS, cfg.MODEL.MASK_FORMER.CATE_WEIGHT) == (1, 0.4)
    assert cfg.MODEL.SWIN.SEM_WINDOW_SIZE == cfg.MODEL.SWIN.WINDOW_SIZE
    assert list(cfg.MODEL.SEMASK.WINDOWED_STAGES) == [0, 1]


@pytest.mark.parametrize("name", SEMASK_LEAVES)
def test_plain_baseline_differs_in_the_semantic_branch_only(name):
    baseline = Path(name).with_name(Path(name).name.removeprefix("semask_")).as_posix()
    semask, plain = flatten(load(name)), flatten(load(baseline))
    differing = {key for key in semask if semask[key] != plain[key]}
    assert differing == SEMANTIC_BRANCH
    assert (plain["MODEL.BACKBONE.NAME"], plain["MODEL.MASK_FORMER.CATE_WEIGHT"]) == (
        "D2SwinTransformer",
        0.0,
    )


@pytest.mark.parametrize("dataset", ["coco", "ade20k"])
def test_panoptic_and_instance_configs_share_one_recipe(dataset):
    """Per data set the two tasks differ only in data, classes, mapper and test-time outputs."""
    name = {
        "coco": "semask_swin_tiny_bs16_50ep.yaml",
        "ade20k": "semask_swin_tiny_bs16_160k_res640.yaml",
    }[dataset]
    panoptic, instance = (
        flatten(load(f"{dataset}/{task}-segmentation/{name}")) for task in ("panoptic", "instance")
    )
    differing = {key for key in panoptic if panoptic[key] != instance[key]}
    assert differing == {
        "DATASETS.TRAIN",
        "DATASETS.TEST",
        "INPUT.DATASET_MAPPER_NAME",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON",
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON",
    }


@pytest.mark.parametrize(
    "task, num_things", [(task, 80 if task.startswith("coco/") else 100) for task in TASKS]
)
def test_training_set_names_the_thing_classes(task, num_things):
    """The model reads its thing classes (instances, panoptic things) from DATASETS.TRAIN[0]."""
    name = next(n for n in SEMASK_LEAVES if n.startswith(f"{task}/") and "_tiny_" in n)
    cfg = load(name)
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert len(model.thing_ids) == num_things
    assert model.thing_ids <= set(range(classes))
    if not cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON:
        assert model.thing_ids == set(range(classes))


@pytest.mark.parametrize("task", ["coco/panoptic-segmentation", "coco/instance-segmentation"])
def test_model_infers_the_outputs_its_task_is_evaluated_on(task):
    """The top-scoring (query, class) pairs become instances, of thing classes only when the
    panoptic output is on too (as Mask2Former)."""
    cfg = load(f"{task}/semask_swin_tiny_bs16_50ep.yaml")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 32, "width": 48}])
    test = cfg.MODEL.MASK_FORMER.TEST
    wanted = {"sem_seg": test.SEMANTIC_ON, "panoptic_seg": test.PANOPTIC_ON, "instances": True}
    assert set(out) == {key for key, on in wanted.items() if on}
    instances = out["instances"]
    assert instances.image_size == (32, 48)
    assert set(instances.pred_classes.tolist()) <= model.thing_ids
    if not test.PANOPTIC_ON:
        assert len(instances) == cfg.TEST.DETECTIONS_PER_IMAGE
    else:
        assert len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
        ids, segments = out["panoptic_seg"]
        assert ids.shape == (32, 48) and out["sem_seg"].shape == (133, 32, 48)
        assert all(s["isthing"] == (s["category_id"] in model.thing_ids) for s in segments)
