"""semask.data.metadata: class names and colours for a model's classes from catalog metadata."""

import logging

from detectron2.data import MetadataCatalog

from semask.data.folder import palette
from semask.data.metadata import resolve_metadata

RED, BLUE = [255, 0, 0], [0, 0, 255]


def test_resolve_metadata_uses_the_dataset_names_and_colours():
    MetadataCatalog.get("vis_test_named").set(
        stuff_classes=["sky", "road"], stuff_colors=[RED, BLUE]
    )
    metadata = resolve_metadata("vis_test_named", 2)
    assert metadata.stuff_classes == ["sky", "road"] and metadata.stuff_colors == [RED, BLUE]


def test_resolve_metadata_fills_in_what_the_dataset_lacks(caplog):
    MetadataCatalog.get("vis_test_partial").set(stuff_classes=["sky"])
    with caplog.at_level(logging.WARNING):
        metadata = resolve_metadata("vis_test_partial", 3)
    assert metadata.stuff_classes == ["sky", "class 1", "class 2"]
    assert metadata.stuff_colors == palette(3)
    assert "names 1 of 3 classes" in caplog.text and "colours for 0 of 3" in caplog.text
    assert MetadataCatalog.get("vis_test_partial").stuff_classes == ["sky"]


def test_an_instance_dataset_names_its_thing_classes(caplog):
    """A data set with thing classes only (detectron2's COCO instances): the model's classes are
    its things, with their colours."""
    MetadataCatalog.get("vis_test_things").set(
        thing_classes=["cat", "dog"], thing_colors=[RED, BLUE]
    )
    with caplog.at_level(logging.WARNING):
        metadata = resolve_metadata("vis_test_things", 2)
    assert metadata.stuff_classes == ["cat", "dog"] and metadata.stuff_colors == [RED, BLUE]
    assert caplog.text == ""


def test_stuff_classes_win_over_thing_classes_in_a_panoptic_dataset():
    MetadataCatalog.get("vis_test_panoptic").set(
        thing_classes=["cat"],
        thing_colors=[RED],
        stuff_classes=["cat", "sky"],
        stuff_colors=[RED, BLUE],
    )
    metadata = resolve_metadata("vis_test_panoptic", 2)
    assert metadata.stuff_classes == ["cat", "sky"] and metadata.stuff_colors == [RED, BLUE]
