"""Registration of SeMask's data sets in detectron2's catalogs, under ``$DETECTRON2_DATASETS``.

* ``quickstart_sem_seg_{train,val}``: the generated quick-start set (:mod:`semask.data.quickstart`),
  a folder data set; ``quickstart_panoptic_{train,val}``, its panoptic flavour
  (:mod:`semask.data.quickstart_panoptic`);
* ``coco_stuff_10k_sem_seg_{train,test}``: COCO-Stuff-10k, 171 classes.
* ADE20K-150 (``ade20k_sem_seg_{train,val}``) and Cityscapes (``cityscapes_fine_sem_seg_*``) are
  registered by detectron2 itself; this module only adds the ``stuff_colors`` they lack;
* COCO panoptic and ADE20K panoptic and instance sets (:mod:`semask.data.panoptic_datasets`):
  ``coco_2017_{train,val}_panoptic_with_sem_seg``, ``ade20k_panoptic_{train,val}``,
  ``ade20k_instance_{train,val}``;
* ``NAME_sem_seg_{train,val}``: every folder data set ``NAME`` (:mod:`semask.data.folder`).

Layouts are described in ``datasets/README.md``.
"""

import os
from typing import Sequence, Tuple

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .folder import (
    FolderMetadata,
    palette,
    register_folder_dataset,
    register_folder_datasets,
    register_sem_seg,
)
from .panoptic_datasets import register_all_panoptic
from .quickstart import QUICKSTART_CLASSES, QUICKSTART_COLORS
from .quickstart_panoptic import register_quickstart_panoptic

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
COCO_STUFF_10K_SPLITS = ("train", "test")


def register_quickstart(root: str) -> None:
    """Register ``quickstart_sem_seg_{train,val}`` from ``root/quickstart``, a folder data set
    whose metadata is known before the folder is generated."""
    register_folder_dataset(
        "quickstart",
        os.path.join(root, "quickstart"),
        FolderMetadata(classes=QUICKSTART_CLASSES, colors=QUICKSTART_COLORS),
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
    """Register every SeMask data set under ``root`` (normally ``$DETECTRON2_DATASETS``), then
    every folder data set there (:mod:`semask.data.folder`)."""
    register_quickstart(root)
    register_quickstart_panoptic(root)
    register_coco_stuff_10k(root)
    register_all_panoptic(root)
    add_missing_colours(
        ["ade20k_sem_seg_train", "ade20k_sem_seg_val"]
        + [f"cityscapes_fine_sem_seg_{split}" for split in ("train", "val", "test")]
    )
    register_folder_datasets(root)
