"""Registration of SeMask's data sets in detectron2's catalogs, under ``$DETECTRON2_DATASETS``.

* ``quickstart_sem_seg_{train,val}``: the embedded quick-start set (:mod:`semask.data.quickstart`).
* ``coco_stuff_10k_sem_seg_{train,test}``: COCO-Stuff-10k, 171 classes.
* ADE20K-150 (``ade20k_sem_seg_{train,val}``) and Cityscapes (``cityscapes_fine_sem_seg_*``) are
  registered by detectron2 itself; this module only adds the ``stuff_colors`` they lack.

Layouts are described in ``datasets/README.md``.
"""

import os
from typing import List, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.utils.colormap import colormap

from .quickstart import QUICKSTART_CLASSES, QUICKSTART_COLORS

IGNORE_LABEL = 255
COCO_STUFF_STUFF_NAMES = (
    "banner blanket branch bridge building-other bush cabinet cage cardboard carpet ceiling-other "
    "ceiling-tile cloth clothes clouds counter cupboard curtain desk-stuff dirt door-stuff fence "
    "floor-marble floor-other floor-stone floor-tile floor-wood flower fog food-other fruit "
    "furniture-other grass gravel ground-other hill house leaves light mat metal mirror-stuff moss "
    "mountain mud napkin net paper pavement pillow plant-other plastic platform playingfield "
    "railing railroad river road rock roof rug salad sand sea shelf sky-other skyscraper snow "
    "solid-other stairs stone straw structural-other table tent textile-other towel tree "
    "vegetable wall-brick wall-concrete wall-other wall-panel wall-stone wall-tile wall-wood "
    "water-other waterdrops window-blind window-other wood"
).split()
# COCO-Stuff ids (1-based, as in the .mat annotations) of its 171 classes, in contiguous order:
# the 80 COCO thing ids, then the 91 stuff ids 92..182.
COCO_STUFF_IDS: Tuple[int, ...] = tuple(
    [c["id"] for c in COCO_CATEGORIES if c["isthing"]] + list(range(92, 183))
)
COCO_STUFF_CLASSES: Tuple[str, ...] = tuple(
    [c["name"] for c in COCO_CATEGORIES if c["isthing"]] + COCO_STUFF_STUFF_NAMES
)
QUICKSTART_SPLITS = {"train": "training", "val": "validation"}
COCO_STUFF_10K_SPLITS = ("train", "test")


def palette(num_classes: int) -> List[List[int]]:
    """``num_classes`` distinct RGB colours, deterministic: detectron2's colour map, then seeded
    random colours."""
    colours = list(dict.fromkeys(map(tuple, colormap(rgb=True, maximum=255).round().astype(int))))
    rng = np.random.default_rng(0)
    while len(colours) < num_classes:
        colour = tuple(int(value) for value in rng.integers(0, 256, size=3))
        if colour not in colours:
            colours.append(colour)
    return [[int(value) for value in colour] for colour in colours[:num_classes]]


def register_sem_seg(
    name: str, image_dir: str, gt_dir: str, classes: Sequence[str], colours: Sequence
) -> None:
    """Register a semantic data set of ``image_dir/**.jpg`` and ``gt_dir/**.png`` label maps."""
    DatasetCatalog.register(
        name, lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg")
    )
    MetadataCatalog.get(name).set(
        stuff_classes=list(classes),
        stuff_colors=[list(c) for c in colours],
        image_root=image_dir,
        sem_seg_root=gt_dir,
        evaluator_type="sem_seg",
        ignore_label=IGNORE_LABEL,
    )


def register_quickstart(root: str) -> None:
    """Register ``quickstart_sem_seg_{train,val}`` from ``root/quickstart``."""
    base = os.path.join(root, "quickstart")
    for split, folder in QUICKSTART_SPLITS.items():
        register_sem_seg(
            f"quickstart_sem_seg_{split}",
            os.path.join(base, "images", folder),
            os.path.join(base, "annotations", folder),
            QUICKSTART_CLASSES,
            QUICKSTART_COLORS,
        )


def register_coco_stuff_10k(root: str) -> None:
    """Register ``coco_stuff_10k_sem_seg_{train,test}`` from ``root/coco/coco_stuff_10k``."""
    base = os.path.join(root, "coco", "coco_stuff_10k")
    for split in COCO_STUFF_10K_SPLITS:
        register_sem_seg(
            f"coco_stuff_10k_sem_seg_{split}",
            os.path.join(base, "images_detectron2", split),
            os.path.join(base, "annotations_detectron2", split),
            COCO_STUFF_CLASSES,
            palette(len(COCO_STUFF_CLASSES)),
        )


def add_missing_colours(names: Sequence[str]) -> None:
    """Give detectron2's own semantic data sets ``stuff_colors`` where they have none."""
    for name in names:
        metadata = MetadataCatalog.get(name)
        if not hasattr(metadata, "stuff_colors"):
            metadata.stuff_colors = palette(len(metadata.stuff_classes))


def register_all(root: str) -> None:
    """Register every SeMask data set under ``root`` (normally ``$DETECTRON2_DATASETS``)."""
    register_quickstart(root)
    register_coco_stuff_10k(root)
    add_missing_colours(
        ["ade20k_sem_seg_train", "ade20k_sem_seg_val"]
        + [f"cityscapes_fine_sem_seg_{split}" for split in ("train", "val", "test")]
    )
