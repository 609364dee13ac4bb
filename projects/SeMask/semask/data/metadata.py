"""Class names and colours for a model's classes, from a data set's catalog metadata."""

import logging
from typing import Dict, List, Optional, Sequence

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


def _thing_ids(
    source: Metadata, dataset_name: Optional[str], num_classes: int, panoptic: bool
) -> Dict[int, int]:
    """Dataset id -> contiguous id of the thing classes among the ``num_classes`` model classes.

    An instance data set (``thing_classes`` only) without ``thing_dataset_id_to_contiguous_id``
    has things only, numbered in order. Otherwise the mapping is the data set's, without ids
    outside the model's classes (with a warning); none at all is warned about for a
    ``panoptic`` model, which then calls every segment stuff.
    """
    mapping = source.get("thing_dataset_id_to_contiguous_id")
    if mapping is None and source.get("thing_classes") and not source.get("stuff_classes"):
        mapping = {i: i for i in range(min(len(source.thing_classes), num_classes))}
    if mapping is None:
        if panoptic:
            logger.warning(
                f"dataset {dataset_name!r} does not say which classes are things (it has no "
                "thing_dataset_id_to_contiguous_id): every panoptic segment is stuff"
            )
        return {}
    outside = sorted(c for c in mapping.values() if not 0 <= c < num_classes)
    if outside:
        logger.warning(
            f"dataset {dataset_name!r}: thing classes {outside} are not among the "
            f"{num_classes} classes the model predicts; they are left out"
        )
    return {int(d): int(c) for d, c in mapping.items() if 0 <= c < num_classes}


def resolve_metadata(
    dataset_name: Optional[str], num_classes: int, *, panoptic: bool = False
) -> Metadata:
    """Class names and colours for ``num_classes`` classes from ``dataset_name``'s metadata.

    ``stuff_classes`` / ``stuff_colors`` name and colour every class the model predicts, by
    contiguous id (Mask2Former's convention, for panoptic data sets too);
    ``thing_dataset_id_to_contiguous_id`` says which of them are things, and ``thing_classes`` /
    ``thing_colors`` list those, in contiguous id order. Names or colours that the dataset lacks
    (no dataset, no :func:`dataset_classes` or colours, or fewer entries than ``num_classes``)
    are generated, with a warning; so are missing thing ids of a ``panoptic`` model (see
    :func:`_thing_ids`). The catalog is not modified.
    """
    source = MetadataCatalog.get(dataset_name) if dataset_name else Metadata()
    classes = list(dataset_classes(source) or [])
    colors: List[List[int]] = [list(color) for color in _dataset_colors(source)]
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
    thing_ids = _thing_ids(source, dataset_name, num_classes, panoptic)
    things = sorted(set(thing_ids.values()))
    return Metadata(
        name=dataset_name or "N/A",
        stuff_classes=classes,
        stuff_colors=colors,
        thing_classes=[classes[c] for c in things],
        thing_colors=[colors[c] for c in things],
        thing_dataset_id_to_contiguous_id=thing_ids,
    )
