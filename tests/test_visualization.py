"""Visualisation: colour maps, overlays, region names, prior panels, figures, legends, and
panoptic and instance drawings."""

from typing import List

import numpy as np
import pytest
import torch
from detectron2.data.catalog import Metadata
from detectron2.structures import BitMasks, Instances
from detectron2.utils.visualizer import Visualizer

from semask import visualization
from semask.data.builtin import palette
from semask.visualization import (
    PANEL_GAP,
    TITLE_HEIGHT,
    colorize,
    compose_panels,
    draw_legend,
    draw_overlay,
    draw_priors_figure,
    prior_panels,
    side_by_side,
)

RED, GREEN, BLUE = [255, 0, 0], [0, 255, 0], [0, 0, 255]
METADATA = Metadata(
    name="rgb", stuff_classes=["red", "green", "blue"], stuff_colors=[RED, GREEN, BLUE]
)


def test_generated_colors_are_distinct_and_stable():
    colors = palette(200)
    assert colors == palette(200) and len(colors) == 200
    assert len({tuple(color) for color in colors}) == 200
    assert all(0 <= value <= 255 for color in colors for value in color)


def test_colorize_maps_labels_to_colours_and_unknown_labels_to_black():
    labels = torch.tensor([[0, 1], [2, 255]])
    assert colorize(labels, [RED, GREEN, BLUE]).tolist() == [[RED, GREEN], [BLUE, [0, 0, 0]]]


def test_overlay_keeps_the_size_and_tints_each_region():
    image = np.full((160, 200, 3), 128, dtype=np.uint8)
    labels = np.zeros((160, 200), dtype=np.int64)
    labels[:, 100:] = 2
    overlay = draw_overlay(image, labels, METADATA, alpha=0.5)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    # Corners are away from the class names drawn at the region centres.
    left, right = overlay[2:10, 2:10].reshape(-1, 3).mean(0), overlay[2:10, -10:-2].reshape(
        -1, 3
    ).mean(0)
    assert left[0] > 170 and left[2] < 90
    assert right[2] > 170 and right[0] < 90


def test_small_images_are_tinted_without_names():
    image = np.full((40, 60, 3), 128, dtype=np.uint8)
    labels = np.zeros((40, 60), dtype=np.int64)
    labels[:, 30:] = 1
    overlay = draw_overlay(image, labels, METADATA, alpha=0.5)
    assert overlay.shape == image.shape
    blend = 0.5 * image + 0.5 * np.array([RED, GREEN])[labels]
    # Everywhere but along the region borders, the overlay is the half-and-half blend.
    inner = np.abs(overlay - blend).max(axis=2) <= 2
    inner[:, 28:34] = inner[:3] = inner[-3:] = inner[:, :3] = inner[:, -3:] = True
    assert inner.all()
    named = draw_overlay(image, labels, METADATA, alpha=0.5, names=True)
    assert (np.abs(named - blend).max(axis=2) > 2).mean() > 0.05  # outlines and names


def test_side_by_side_needs_one_height():
    a, b = np.zeros((4, 5, 3), np.uint8), np.ones((4, 3, 3), np.uint8)
    panel = side_by_side(a, b)
    assert panel.shape == (4, 8, 3) and (panel[:, 5:] == 1).all()
    with pytest.raises(ValueError, match=r"heights \[4, 6\]"):
        side_by_side(a, np.zeros((6, 5, 3), np.uint8))


def test_prior_panels_show_each_stage_and_the_prediction():
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    stage_priors = {}
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        size = (32 // 2 ** (i + 2), 64 // 2 ** (i + 2))
        prior = torch.zeros(3, *size)
        prior[1, :, : size[1] // 2] = 1.0  # left half green, right half red
        stage_priors[name] = prior
    sem_prior = torch.zeros(3, 32, 64)
    sem_prior[2] = 1.0
    labels = torch.ones(32, 64, dtype=torch.int64)
    panels = prior_panels(image, labels, sem_prior, stage_priors, METADATA)
    titles = [title for title, _ in panels]
    assert titles == [
        "input",
        "res2 prior",
        "res3 prior",
        "res4 prior",
        "res5 prior",
        "aggregated prior",
        "prediction",
    ]
    assert all(panel.shape == (32, 64, 3) for _, panel in panels)
    for _, panel in panels[1:5]:
        assert (panel[:, :32] == GREEN).all() and (panel[:, 32:] == RED).all()
    assert (panels[5][1] == BLUE).all() and (panels[6][1] == GREEN).all()
    without_aggregate = prior_panels(image, labels, None, stage_priors, METADATA)
    assert [title for title, _ in without_aggregate] == titles[:5] + titles[6:]


def test_compose_panels_places_titled_tiles_in_a_grid():
    colors = palette(7)
    panels = [(f"p{i}", np.full((10, 20, 3), color, np.uint8)) for i, color in enumerate(colors)]
    figure = compose_panels(panels, tile_size=40, columns=4)
    cell_h, cell_w = TITLE_HEIGHT + 20, 40
    assert figure.shape == (2 * cell_h + PANEL_GAP, 4 * cell_w + 3 * PANEL_GAP, 3)
    for i, color in enumerate(colors):
        top, left = (i // 4) * (cell_h + PANEL_GAP), (i % 4) * (cell_w + PANEL_GAP)
        tile = figure[top + TITLE_HEIGHT : top + cell_h, left : left + cell_w]
        assert (tile == color).all()
        assert (figure[top : top + TITLE_HEIGHT, left : left + cell_w] < 255).any()  # title text
    assert (figure[2 * cell_h :, 3 * (cell_w + PANEL_GAP) :] == 255).all()  # empty 8th cell
    with pytest.raises(ValueError, match="at least one panel"):
        compose_panels([])
    with pytest.raises(ValueError, match="one size"):
        compose_panels([("a", np.zeros((4, 4, 3), np.uint8)), ("b", np.zeros((5, 4, 3), np.uint8))])


def test_legend_lists_the_classes_in_rows():
    legend = draw_legend([2, 0], METADATA, width=200, entry_width=100)
    assert legend.shape == (TITLE_HEIGHT, 200, 3)
    assert (legend[8:14, 6:12] == BLUE).all() and (legend[8:14, 106:112] == RED).all()
    assert draw_legend([0, 1, 2], METADATA, width=200, entry_width=100).shape[0] == 2 * TITLE_HEIGHT
    long_name = Metadata(name="long", stuff_classes=["x" * 80, "y"], stuff_colors=[RED, BLUE])
    legend = draw_legend([0, 1], long_name, width=200, entry_width=100)
    # The long name is cut short of the next entry: white before the second swatch.
    assert (legend[:, 96:102] == 255).all() and (legend[8:14, 106:112] == BLUE).all()


def test_priors_figure_is_the_panel_grid_over_a_legend_of_the_classes_shown():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    stage_priors = {"res5": torch.tensor([[[0.0]], [[0.0]], [[1.0]]])}  # all blue
    labels = torch.zeros(32, 32, dtype=torch.int64)
    labels[:4] = 1  # mostly red, some green
    figure = draw_priors_figure(
        image, labels, None, stage_priors, METADATA, tile_size=32, columns=3
    )
    grid = compose_panels(prior_panels(image, labels, None, stage_priors, METADATA), 32, 3)
    assert np.array_equal(figure[: grid.shape[0]], grid)
    legend = figure[grid.shape[0] :]
    assert np.array_equal(legend, draw_legend([0, 1, 2], METADATA, grid.shape[1]))


def test_large_overlays_are_blended_with_numpy_and_named(monkeypatch):
    monkeypatch.setattr(visualization, "VISUALIZER_MAX_PIXELS", 100)
    monkeypatch.setattr(visualization, "BLEND_ROWS", 7)  # several bands
    image = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
    labels = np.zeros((160, 200), dtype=np.int64)
    labels[:, 100:] = 2
    labels[:5, :5] = 255  # outside the palette: left as it is
    blend = np.round(0.4 * image + 0.6 * np.array([RED, GREEN, BLUE])[labels % 3])
    blend[:5, :5] = image[:5, :5]
    plain = draw_overlay(image, labels, METADATA, alpha=0.6, names=False)
    assert plain.dtype == np.uint8 and np.array_equal(plain, blend)
    named = draw_overlay(image, labels, METADATA, alpha=0.6)
    written = (named != plain).any(axis=2)
    assert 0.002 < written.mean() < 0.2
    # "red" is written inside the left region, "blue" inside the right one.
    assert written[:, :100].any() and written[:, 100:].any()


def test_labelled_pictures_are_resized_for_legibility():
    labels = np.zeros((600, 1500), dtype=np.int64)
    labels[:, 1000:] = 2
    image = np.zeros((600, 1500, 3), dtype=np.uint8)
    large = visualization.draw_labelled(image, [labels, labels], METADATA)
    # shrunk to a longer side of 1024: three panels of 410 x 1024 over one legend row
    assert large.shape == (410 + visualization.TITLE_HEIGHT, 3 * 1024, 3)
    legend = large[410:]
    assert (legend == RED).all(axis=2).any() and (legend == BLUE).all(axis=2).any()
    assert not (legend == GREEN).all(axis=2).any()  # class 1 is not shown
    small = visualization.draw_labelled(image[:10, :20], [labels[:10, :20]], METADATA)
    assert small.shape[:2] == (260 + visualization.TITLE_HEIGHT, 2 * 520)  # enlarged 26x


# Four classes by contiguous id, things at 1 and 3 (not first, as in ADE20K).
UNIVERSAL = Metadata(
    name="universal",
    stuff_classes=["sky", "cat", "road", "dog"],
    stuff_colors=[BLUE, RED, [128, 128, 128], GREEN],
    thing_classes=["cat", "dog"],
    thing_colors=[RED, GREEN],
)


def sky_and_dog(height: int = 160, width: int = 200):
    """Segment 1 (sky, stuff) over the top half; segment 2 (a dog) in the bottom right quarter;
    the bottom left is void."""
    ids = torch.zeros(height, width, dtype=torch.int32)
    ids[: height // 2] = 1
    ids[height // 2 :, width // 2 :] = 2
    segments_info = [
        {"id": 1, "category_id": 0, "isthing": False},
        {"id": 2, "category_id": 3, "isthing": True},
    ]
    return ids, segments_info


def test_panoptic_drawing_tints_segments_by_contiguous_class_and_leaves_void():
    image = np.full((160, 200, 3), 100, dtype=np.uint8)
    ids, segments_info = sky_and_dog()
    # category 3 is beyond thing_classes' 2 entries: looked up among all classes
    drawn = visualization.draw_panoptic(image, ids, segments_info, UNIVERSAL, alpha=0.5)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    corner = drawn[5:12, 5:12].reshape(-1, 3).astype(float)  # inside the outline
    assert np.abs(corner - (0.5 * image[0, 0] + 0.5 * np.array(BLUE))).max() <= 3
    assert np.array_equal(drawn[140:, :60], image[140:, :60])  # void, away from the outlines
    dog = drawn[130:150, 160:190].astype(int) - image[130:150, 160:190]
    assert (np.abs(dog).max(axis=2) > 20).mean() > 0.9
    assert segments_info[0] == {"id": 1, "category_id": 0, "isthing": False}  # not written to


def test_large_panoptic_pictures_are_drawn_smaller_and_enlarged(monkeypatch):
    monkeypatch.setattr(visualization, "VISUALIZER_MAX_PIXELS", 80 * 100)
    sizes = []

    def recording_visualizer(image, *args, **kwargs):
        sizes.append(image.shape[:2])
        return Visualizer(image, *args, **kwargs)

    monkeypatch.setattr(visualization, "Visualizer", recording_visualizer)
    image = np.full((160, 200, 3), 100, dtype=np.uint8)
    ids, segments_info = sky_and_dog()
    drawn = visualization.draw_panoptic(image, ids, segments_info, UNIVERSAL, alpha=0.5)
    assert sizes == [(80, 100)] and drawn.shape == image.shape
    corner = drawn[12:20, 12:20].reshape(-1, 3).astype(float)  # inside the enlarged outline
    assert np.abs(corner - (0.5 * image[0, 0] + 0.5 * np.array(BLUE))).max() <= 3
    assert np.abs(drawn[140:, :60].astype(int) - image[140:, :60]).max() <= 1


def dog_instances(height: int, width: int, scores: List[float]) -> Instances:
    masks = torch.zeros(len(scores), height, width, dtype=torch.bool)
    masks[:, height // 2 :, width // 2 :] = True
    instances = Instances((height, width))
    instances.pred_masks = masks
    instances.pred_boxes = BitMasks(masks).get_bounding_boxes()
    instances.scores = torch.tensor(scores)
    instances.pred_classes = torch.full((len(scores),), 3)
    return instances


@pytest.mark.parametrize("max_pixels", [1 << 21, 80 * 100])
def test_instance_drawing_colours_the_masks(monkeypatch, max_pixels):
    monkeypatch.setattr(visualization, "VISUALIZER_MAX_PIXELS", max_pixels)
    image = np.full((160, 200, 3), 100, dtype=np.uint8)
    drawn = visualization.draw_instances(image, dog_instances(160, 200, [0.9]), UNIVERSAL)
    assert drawn.shape == image.shape
    inside = drawn[125:150, 150:190].astype(int) - image[125:150, 150:190]
    assert (np.abs(inside).max(axis=2) > 20).mean() > 0.9
    assert np.abs(drawn[:60, :80].astype(int) - image[:60, :80]).max() <= 1
    nothing = visualization.draw_instances(image, dog_instances(160, 200, []), UNIVERSAL)
    assert np.array_equal(nothing, image)
