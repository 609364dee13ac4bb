"""Pictures of semantic, panoptic and instance segmentation results and of SeMask's per-stage
semantic priors.

Every function is pure: it takes RGB ``uint8`` images ``[H, W, 3]``, label maps ``[H, W]``, score
or prior tensors ``[K, h, w]``, panoptic segments or instances and returns a new RGB image. Class
names and colours come from a dataset's ``stuff_classes`` / ``stuff_colors`` metadata, which name
all K classes by contiguous id (:func:`semask.data.metadata.resolve_metadata`);
:mod:`semask.writers` writes pictures to files.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from detectron2.data.catalog import Metadata
from detectron2.structures import Instances
from detectron2.utils.visualizer import ColorMode, Visualizer

from .upsample import resize_nearest

ArrayLike = Union[np.ndarray, torch.Tensor]
Panel = Tuple[str, np.ndarray]

TITLE_HEIGHT = 22
PANEL_GAP = 4
BACKGROUND = (255, 255, 255)
NAMES_MIN_SIDE = 160
LEGEND_SCALE = 0.45
# Above this many pixels overlays are blended with numpy: detectron2's Visualizer keeps several
# full-size canvases and per-class masks (about 150 bytes a pixel).
VISUALIZER_MAX_PIXELS = 1 << 21
BLEND_ROWS = 256
NAME_GRID = 256


def _to_numpy(array: ArrayLike) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def colorize(labels: ArrayLike, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """Colour map [H, W, 3] uint8 of a label map [H, W]; labels outside the palette are black."""
    labels = _to_numpy(labels).astype(np.int64)
    palette = np.concatenate([np.asarray(colors, dtype=np.uint8).reshape(-1, 3), [[0, 0, 0]]])
    outside = (labels < 0) | (labels >= len(colors))
    return palette[np.where(outside, len(colors), labels)]


def draw_overlay(
    image: np.ndarray,
    labels: ArrayLike,
    metadata: Metadata,
    alpha: float = 0.5,
    names: Optional[bool] = None,
) -> np.ndarray:
    """``image`` [H, W, 3] RGB with ``labels`` [H, W] drawn over it.

    Each class region is tinted with its colour (opacity ``alpha``). With ``names`` (default: if
    the shorter image side is at least ``NAMES_MIN_SIDE``) regions are named too, and outlined by
    detectron2's Visualizer; on small images the names would hide the picture. Images of more than
    ``VISUALIZER_MAX_PIXELS`` pixels are tinted by :func:`blend_labels` and named by
    :func:`draw_region_names` instead, in bounded memory.
    """
    labels = _to_numpy(labels)
    if names is None:
        names = min(image.shape[:2]) >= NAMES_MIN_SIDE
    if image.shape[0] * image.shape[1] > VISUALIZER_MAX_PIXELS:
        overlay = blend_labels(image, labels, metadata.stuff_colors, alpha)
        return draw_region_names(overlay, labels, metadata) if names else overlay
    visualizer = Visualizer(image, metadata, instance_mode=ColorMode.IMAGE)
    if names:
        return visualizer.draw_sem_seg(labels, alpha=alpha).get_image()
    for label in np.unique(labels):
        if 0 <= label < len(metadata.stuff_colors):
            color = np.asarray(metadata.stuff_colors[label]) / 255
            visualizer.draw_binary_mask(labels == label, color=color, edge_color=color, alpha=alpha)
    return visualizer.output.get_image()


def _class_metadata(metadata: Metadata) -> Metadata:
    """``metadata`` for drawing segments and instances whose class is a contiguous id of all K
    classes (Mask2Former's convention): detectron2's Visualizer looks things up in
    ``thing_classes`` / ``thing_colors`` by that id, so they name all K classes here."""
    return Metadata(
        name=metadata.name,
        stuff_classes=metadata.stuff_classes,
        stuff_colors=metadata.stuff_colors,
        thing_classes=metadata.stuff_classes,
        thing_colors=metadata.stuff_colors,
    )


def _drawing_size(height: int, width: int) -> Tuple[int, int]:
    """(h, w) at which the Visualizer draws an image of ``height`` x ``width``: that size up to
    ``VISUALIZER_MAX_PIXELS`` pixels, else scaled down to about that many."""
    scale = min(1.0, (VISUALIZER_MAX_PIXELS / (height * width)) ** 0.5)
    return max(round(height * scale), 1), max(round(width * scale), 1)


def _to_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    interpolation = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def draw_panoptic(
    image: np.ndarray,
    panoptic_seg: ArrayLike,
    segments_info: Sequence[Dict],
    metadata: Metadata,
    alpha: float = 0.5,
) -> np.ndarray:
    """``image`` [H, W, 3] RGB with the segments of ``panoptic_seg`` [H, W] (segment ids, 0 void)
    drawn by detectron2's ``Visualizer.draw_panoptic_seg``: stuff tinted in its class colour
    (opacity ``alpha``) and named, things in jittered class colours with their names.

    ``segments_info`` gives each segment's ``id``, ``category_id`` (contiguous, of all K classes)
    and ``isthing``. Images of more than ``VISUALIZER_MAX_PIXELS`` pixels are drawn at a size of
    about that many and enlarged back, in bounded memory.
    """
    height, width = image.shape[:2]
    size = _drawing_size(height, width)
    ids = _resize_nearest(_to_numpy(panoptic_seg), *size)
    visualizer = Visualizer(
        _to_size(image, *size), _class_metadata(metadata), instance_mode=ColorMode.IMAGE
    )
    segments = [dict(segment) for segment in segments_info]  # the Visualizer writes into them
    drawn = visualizer.draw_panoptic_seg(torch.from_numpy(ids), segments, alpha=alpha)
    return _to_size(drawn.get_image(), height, width)


def draw_instances(image: np.ndarray, instances: Instances, metadata: Metadata) -> np.ndarray:
    """``image`` [H, W, 3] RGB with ``instances`` (of image size H x W: ``pred_masks`` [N, H, W],
    ``pred_boxes``, ``scores``, ``pred_classes`` contiguous of all K classes) drawn by detectron2's
    ``Visualizer.draw_instance_predictions``: masks in jittered class colours, boxes, class names
    and scores. Large images are drawn as by :func:`draw_panoptic`."""
    height, width = image.shape[:2]
    size = _drawing_size(height, width)
    instances = instances.to("cpu")
    masks = _to_numpy(instances.pred_masks)
    drawn = Instances(size)
    drawn.pred_masks = np.zeros((len(masks), *size), dtype=bool)
    for resized, mask in zip(drawn.pred_masks, masks):
        resized[...] = _resize_nearest(mask, *size) > 0
    drawn.pred_boxes = instances.pred_boxes.clone()
    drawn.pred_boxes.scale(size[1] / width, size[0] / height)
    drawn.scores = instances.scores
    drawn.pred_classes = instances.pred_classes
    visualizer = Visualizer(
        _to_size(image, *size), _class_metadata(metadata), instance_mode=ColorMode.SEGMENTATION
    )
    return _to_size(visualizer.draw_instance_predictions(drawn).get_image(), height, width)


def blend_labels(
    image: np.ndarray, labels: np.ndarray, colors: Sequence[Sequence[int]], alpha: float
) -> np.ndarray:
    """``image`` [H, W, 3] uint8 blended with the colour of each pixel's label [H, W] (opacity
    ``alpha``), ``BLEND_ROWS`` rows at a time; labels outside ``colors`` keep the image."""
    palette = np.asarray(colors, dtype=np.float32).reshape(-1, 3)
    out = np.empty_like(image)
    for start in range(0, image.shape[0], BLEND_ROWS):
        rows = slice(start, start + BLEND_ROWS)
        band, label = image[rows].astype(np.float32), labels[rows]
        inside = (label >= 0) & (label < len(palette))
        mixed = band * (1 - alpha) + palette[np.where(inside, label, 0)] * alpha
        out[rows] = np.round(np.where(inside[..., None], mixed, band))
    return out


def draw_region_names(
    image: np.ndarray, labels: np.ndarray, metadata: Metadata, min_area: float = 0.005
) -> np.ndarray:
    """``image`` [H, W, 3] with the class name of each region [H, W] covering at least
    ``min_area`` of it written (white on black) at the point deepest inside the region, found on
    a label grid subsampled to ``NAME_GRID`` cells a side."""
    step = max(-(-max(labels.shape) // NAME_GRID), 1)
    grid = labels[::step, ::step]
    scale = max((image.shape[0] * image.shape[1]) ** 0.5 / 2000, 0.4)  # the Visualizer's size
    out = image.copy()
    for label in np.unique(grid):
        mask = (grid == label).astype(np.uint8)
        if not 0 <= label < len(metadata.stuff_classes) or mask.mean() < min_area:
            continue
        depth = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        row, col = np.unravel_index(int(depth.argmax()), depth.shape)
        name = str(metadata.stuff_classes[label])
        (text_w, text_h), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        origin = (int(col * step - text_w // 2), int(row * step + text_h // 2))
        for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(
                out,
                name,
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                color,
                max(round(thickness * scale), 1),
                cv2.LINE_AA,
            )
    return out


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """The RGB images (all of one height) next to each other, left to right."""
    heights = {image.shape[0] for image in images}
    if len(heights) != 1:
        raise ValueError(f"side_by_side needs images of one height, got heights {sorted(heights)}")
    return np.concatenate(images, axis=1)


def _resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``labels`` [h, w] (any dtype) resized to [height, width] by :func:`resize_nearest`."""
    return resize_nearest(torch.from_numpy(np.ascontiguousarray(labels)), height, width).numpy()


def prior_label_maps(
    labels: ArrayLike,
    sem_prior: Optional[ArrayLike],
    stage_priors: Dict[str, ArrayLike],
    height: int,
    width: int,
) -> List[Tuple[str, np.ndarray]]:
    """Titled label maps [height, width] (nearest resizing): the argmax of each stage's prior
    (``stage_priors``: name -> [K, h_i, w_i], in the given order), of the aggregated prior
    ``sem_prior`` [K, H', W'] if given, and the final prediction ``labels`` [H', W']."""
    maps = [
        (f"{name} prior", _to_numpy(prior).argmax(axis=0)) for name, prior in stage_priors.items()
    ]
    if sem_prior is not None:
        maps.append(("aggregated prior", _to_numpy(sem_prior).argmax(axis=0)))
    maps.append(("prediction", _to_numpy(labels)))
    return [(title, _resize_nearest(label_map, height, width)) for title, label_map in maps]


def prior_panels(
    image: np.ndarray,
    labels: ArrayLike,
    sem_prior: Optional[ArrayLike],
    stage_priors: Dict[str, ArrayLike],
    metadata: Metadata,
) -> List[Panel]:
    """Titled panels, all of ``image``'s size [H, W, 3]: the input, then the colour maps of
    :func:`prior_label_maps` in its order."""
    maps = prior_label_maps(labels, sem_prior, stage_priors, *image.shape[:2])
    return _colour_panels(image, maps, metadata)


def _colour_panels(
    image: np.ndarray, maps: Sequence[Tuple[str, np.ndarray]], metadata: Metadata
) -> List[Panel]:
    return [("input", image)] + [(t, colorize(m, metadata.stuff_colors)) for t, m in maps]


def draw_priors_figure(
    image: np.ndarray,
    labels: ArrayLike,
    sem_prior: Optional[ArrayLike],
    stage_priors: Dict[str, ArrayLike],
    metadata: Metadata,
    tile_size: int = 320,
    columns: int = 4,
) -> np.ndarray:
    """:func:`compose_panels` of :func:`prior_panels` over a :func:`draw_legend` of every class
    shown, the classes of the prediction first (largest area first).

    The panels are made at their tile size (:func:`panel_tile_size`), not at ``image``'s size.
    """
    height, width = panel_tile_size(*image.shape[:2], tile_size)
    maps = prior_label_maps(labels, sem_prior, stage_priors, height, width)
    classes, counts = np.unique(maps[-1][1], return_counts=True)
    shown = [int(c) for c in classes[np.argsort(-counts, kind="stable")]]
    for _, label_map in maps[:-1]:
        shown += [int(c) for c in np.unique(label_map) if int(c) not in shown]
    tile = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    grid = compose_panels(_colour_panels(tile, maps, metadata), tile_size, columns)
    legend = draw_legend(
        [c for c in shown if 0 <= c < len(metadata.stuff_classes)], metadata, grid.shape[1]
    )
    return np.concatenate([grid, legend], axis=0)


def panel_tile_size(height: int, width: int, tile_size: int) -> Tuple[int, int]:
    """(height, width) of a panel tile: the image scaled so its longer side is ``tile_size``."""
    scale = tile_size / max(height, width)
    return max(round(height * scale), 1), max(round(width * scale), 1)


def compose_panels(panels: Sequence[Panel], tile_size: int = 320, columns: int = 4) -> np.ndarray:
    """A grid figure of titled panels (all of one size), ``columns`` per row, row-major.

    Each cell is a title strip of ``TITLE_HEIGHT`` rows over the panel scaled to
    :func:`panel_tile_size`; cells are ``PANEL_GAP`` pixels apart on a white background.
    """
    if not panels:
        raise ValueError("compose_panels needs at least one panel")
    shapes = {panel.shape[:2] for _, panel in panels}
    if len(shapes) != 1:
        raise ValueError(f"compose_panels needs panels of one size, got {sorted(shapes)}")
    tile_h, tile_w = panel_tile_size(*shapes.pop(), tile_size)
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    cell_h, cell_w = TITLE_HEIGHT + tile_h, tile_w
    figure = np.full(
        (rows * cell_h + (rows - 1) * PANEL_GAP, columns * cell_w + (columns - 1) * PANEL_GAP, 3),
        BACKGROUND,
        dtype=np.uint8,
    )
    for index, (title, panel) in enumerate(panels):
        top = (index // columns) * (cell_h + PANEL_GAP)
        left = (index % columns) * (cell_w + PANEL_GAP)
        tile = cv2.resize(panel, (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)
        figure[top + TITLE_HEIGHT : top + cell_h, left : left + cell_w] = tile
        cv2.putText(
            figure,
            title,
            (left + 2, top + TITLE_HEIGHT - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return figure


def _fit_text(text: str, max_width: int, scale: float) -> str:
    """``text``, shortened with ".." until it is at most ``max_width`` pixels wide."""
    shortened = text
    while cv2.getTextSize(shortened, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > max_width:
        text = text[:-1]
        shortened = text + ".."
        if not text:
            break
    return shortened


def draw_legend(
    labels: Sequence[int], metadata: Metadata, width: int, entry_width: int = 160
) -> np.ndarray:
    """A white strip [h, width, 3] with a colour swatch and the name of each class in ``labels``,
    laid out in rows of ``width // entry_width`` entries (long names shortened to fit)."""
    per_row = max(width // entry_width, 1)
    rows = max(-(-len(labels) // per_row), 1)
    strip = np.full((rows * TITLE_HEIGHT, width, 3), BACKGROUND, dtype=np.uint8)
    for index, label in enumerate(labels):
        top, left = (index // per_row) * TITLE_HEIGHT, (index % per_row) * entry_width
        color = tuple(int(value) for value in metadata.stuff_colors[label])
        cv2.rectangle(strip, (left + 2, top + 4), (left + 16, top + 18), color, cv2.FILLED)
        name = _fit_text(str(metadata.stuff_classes[label]), entry_width - 24, LEGEND_SCALE)
        cv2.putText(
            strip,
            name,
            (left + 20, top + 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            LEGEND_SCALE,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return strip


def draw_labelled(
    image: np.ndarray,
    label_maps: Sequence[ArrayLike],
    metadata: Metadata,
    min_side: int = 256,
    max_side: int = 1024,
) -> np.ndarray:
    """``image`` [H, W, 3] RGB, then each of ``label_maps`` ([H, W] each) drawn over it by
    :func:`draw_overlay` (with region names), side by side, over a :func:`draw_legend` of every
    class shown (largest area first).

    Small images are enlarged by an integer factor until their shorter side reaches ``min_side``
    (pixels repeated); large ones are shrunk until their longer side is at most ``max_side``.
    """
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        factor = -(-min_side // max(min(height, width), 1))
        size = (width * factor, height * factor)
    elif max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
    else:
        size = (width, height)
    labels = [_resize_nearest(_to_numpy(m), size[1], size[0]) for m in label_maps]
    if size != (width, height):
        interpolation = cv2.INTER_AREA if size[0] < width else cv2.INTER_NEAREST
        image = cv2.resize(image, size, interpolation=interpolation)
    panels = [image] + [draw_overlay(image, m, metadata, 0.6, names=True) for m in labels]
    picture = side_by_side(*panels)
    classes, counts = np.unique(np.concatenate([m.ravel() for m in labels]), return_counts=True)
    shown = [
        int(c)
        for c in classes[np.argsort(-counts, kind="stable")]
        if 0 <= c < len(metadata.stuff_classes)
    ]
    return np.concatenate([picture, draw_legend(shown, metadata, picture.shape[1])], axis=0)
