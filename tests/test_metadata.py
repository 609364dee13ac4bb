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
