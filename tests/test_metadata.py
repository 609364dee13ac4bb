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


def test_thing_classes_are_the_things_among_all_classes_in_contiguous_order(caplog):
    """Things need not come first (ADE20K): thing_classes list them in contiguous id order."""
    MetadataCatalog.get("vis_test_mixed").set(
        stuff_classes=["sky", "cat", "road", "dog"],
        stuff_colors=[BLUE, RED, [1, 2, 3], [4, 5, 6]],
        thing_dataset_id_to_contiguous_id={23: 3, 21: 1},
    )
    with caplog.at_level(logging.WARNING):
        metadata = resolve_metadata("vis_test_mixed", 4, panoptic=True)
    assert caplog.text == ""
    assert metadata.thing_classes == ["cat", "dog"] and metadata.thing_colors == [RED, [4, 5, 6]]
    assert metadata.thing_dataset_id_to_contiguous_id == {23: 3, 21: 1}
    assert metadata.stuff_classes == ["sky", "cat", "road", "dog"]


def test_an_instance_dataset_without_ids_numbers_its_things_in_order(caplog):
    MetadataCatalog.get("vis_test_instances").set(thing_classes=["cat", "dog", "cow"])
    with caplog.at_level(logging.WARNING):
        metadata = resolve_metadata("vis_test_instances", 3, panoptic=True)
    assert metadata.thing_dataset_id_to_contiguous_id == {0: 0, 1: 1, 2: 2}
    assert metadata.thing_classes == metadata.stuff_classes == ["cat", "dog", "cow"]
    assert metadata.thing_colors == metadata.stuff_colors == palette(3)
    assert "colours for 0 of 3" in caplog.text and "things" not in caplog.text


def test_a_panoptic_model_without_thing_ids_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        semantic = resolve_metadata(None, 2)
    assert "thing" not in caplog.text
    with caplog.at_level(logging.WARNING):
        panoptic = resolve_metadata(None, 2, panoptic=True)
    assert "None does not say which classes are things" in caplog.text
    assert "every panoptic segment is stuff" in caplog.text
    for metadata in (semantic, panoptic):
        assert metadata.thing_classes == [] and metadata.thing_dataset_id_to_contiguous_id == {}
        assert metadata.stuff_classes == ["class 0", "class 1"]


def test_thing_ids_beyond_the_model_classes_are_left_out(caplog):
    MetadataCatalog.get("vis_test_beyond").set(
        stuff_classes=["sky", "cat"], thing_dataset_id_to_contiguous_id={5: 1, 9: 7}
    )
    with caplog.at_level(logging.WARNING):
        metadata = resolve_metadata("vis_test_beyond", 2)
    assert "thing classes [7] are not among the 2 classes the model predicts" in caplog.text
    assert metadata.thing_dataset_id_to_contiguous_id == {5: 1}
    assert metadata.thing_classes == ["cat"]
