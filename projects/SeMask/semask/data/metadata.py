"""Class names and colours for a model's classes, from a data set's catalog metadata."""

import logging
from typing import Optional, Sequence

from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata

from .folder import palette

logger = logging.getLogger(__name__)


def dataset_classes(metadata: Metadata) -> Optional[Sequence[str]]:
    """The classes a model of the data set predicts: its ``stuff_classes`` (all classes of a
    semantic or panoptic data set), else its ``thing_classes`` (an instance data set); None if it
    has neither."""
    return metadata.get("stuff_classes") or metadata.get("thing_classes")


def _dataset_colors(metadata: Metadata) -> Sequence[Sequence[int]]:
    """The colours of :func:`dataset_classes`, or none."""
    key = "stuff_colors" if metadata.get("stuff_classes") else "thing_colors"
    return metadata.get(key, None) or []


def resolve_metadata(dataset_name: Optional[str], num_classes: int) -> Metadata:
    """Class names and colours for ``num_classes`` classes from ``dataset_name``'s metadata.

    Names or colours that the dataset lacks (no dataset, no :func:`dataset_classes` or colours, or
    fewer entries than ``num_classes``) are generated, with a warning. The catalog is not modified.
    """
    source = MetadataCatalog.get(dataset_name) if dataset_name else Metadata()
    classes = list(dataset_classes(source) or [])
    colors = [list(color) for color in _dataset_colors(source)]
    if len(classes) > num_classes:
        logger.warning(
            f"dataset {dataset_name!r} names {len(classes)} classes, "
            f"the model predicts {num_classes}"
        )
    if len(classes) < num_classes:
        logger.warning(
            f"dataset {dataset_name!r} names {len(classes)} of {num_classes} classes; "
            "the others are called 'class <id>'"
        )
        classes += [f"class {i}" for i in range(len(classes), num_classes)]
    if len(colors) < num_classes:
        logger.warning(
            f"dataset {dataset_name!r} has colours for {len(colors)} of {num_classes} classes; "
            "the others are generated"
        )
        colors += palette(num_classes)[len(colors) :]
    return Metadata(name=dataset_name or "N/A", stuff_classes=classes, stuff_colors=colors)
