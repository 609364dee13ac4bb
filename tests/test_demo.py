"""demo/demo.py end to end: generated images and video in, overlays (semantic, panoptic, instance),
priors figures, labels out."""

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest
import torch
from conftest import semask_cfg
from detectron2.data.catalog import Metadata
from detectron2.structures import Instances
from test_predictor import NUM_CLASSES, QUICKSTART_CONFIG, tiny_semask_weights
from test_universal_predictor import universal_opts, universal_weights

from semask.data.metadata import resolve_metadata
from semask.data.quickstart import make_sample
from semask.engine import build_cfg
from semask.predictor import Prediction, SeMaskPredictor
from semask.visualization import (
    PANEL_GAP,
    TITLE_HEIGHT,
    compose_panels,
    panel_tile_size,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / "demo"
CONFIGS = sorted(p for p in (REPO_ROOT / "configs").rglob("*.yaml") if "Base" not in p.name)
SEMANTIC_FPN_CONFIG = (
    REPO_ROOT / "configs/ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml"
)
PLAIN_FPN_CONFIG = REPO_ROOT / "configs/ade20k/semantic_fpn/swin_tiny_bs16_80k_res512.yaml"
TINY_SWIN = [
    "MODEL.SWIN.EMBED_DIM",
    "24",
    "MODEL.SWIN.DEPTHS",
    "[1, 1, 1, 1]",
    "MODEL.SWIN.NUM_HEADS",
    "[1, 2, 4, 8]",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "INPUT.MIN_SIZE_TEST",
    "64",
]
PRIOR_PANELS = ["input", "res2", "res3", "res4", "res5", "aggregated prior", "prediction"]


def load_demo():
    """demo/demo.py as a module; its sibling modules import as under `python demo/demo.py`."""
    if str(DEMO_DIR) not in sys.path:
        sys.path.append(str(DEMO_DIR))
    spec = importlib.util.spec_from_file_location("semask_demo", DEMO_DIR / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_demo()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config of the contract stand-in model of test_predictor (3 classes, RGB input)."""
    path = tmp_path / "contract.yaml"
    path.write_text(
        "VERSION: 2\n"
        "MODEL:\n"
        "  META_ARCHITECTURE: ContractTestSegmenter\n"
        "  DEVICE: cpu\n"
        f"  SEM_SEG_HEAD:\n    NUM_CLASSES: {NUM_CLASSES}\n"
        "INPUT:\n  FORMAT: RGB\n  MIN_SIZE_TEST: 32\n  MAX_SIZE_TEST: 128\n"
        "DATASETS:\n  TEST: []\n"
    )
    return path


def colour_image(height: int, width: int, seed: int) -> np.ndarray:
    """BGR uint8 image of random saturated blocks (each block's strongest channel differs)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 3, size=(height // 8 + 1, width // 8 + 1))
    image = np.zeros((height, width, 3), dtype=np.uint8)
    channel = np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:height, :width]
    for c in range(3):
        image[..., c] = np.where(channel == c, 230, 20)
    return image


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Quick-start-like colour, grayscale, RGBA and 16-bit PNGs, a text file named like an image
    and one without an image suffix."""
    folder = tmp_path / "images"
    folder.mkdir()
    samples = [make_sample(np.random.default_rng(seed), 160)[0][:, :, ::-1] for seed in range(3)]
    cv2.imwrite(str(folder / "colour.png"), samples[0][:120])
    cv2.imwrite(str(folder / "gray.png"), samples[0][:120, :, 1])
    alpha = np.full((100, 140), 90, np.uint8)
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([samples[1][:100, :140], alpha]))
    cv2.imwrite(str(folder / "deep.png"), samples[2][:, :120].astype(np.uint16) * 257)
    (folder / "broken.png").write_text("this is not an image")
    (folder / "notes.txt").write_text("not an image either, and not named like one")
    return folder


@pytest.fixture(params=["contract", pytest.param("quickstart", marks=pytest.mark.slow)])
def any_config(request, config_file: Path) -> Path:
    """The stand-in model's config, then the quick-start config (random weights)."""
    return config_file if request.param == "contract" else QUICKSTART_CONFIG


def as_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image = image if image.ndim == 3 else np.dstack([image] * 3)
    return (image[..., :3] // (257 if image.dtype == np.uint16 else 1)).astype(np.uint8)


def assert_seven_panels(figure: np.ndarray, source: np.ndarray) -> None:
    """``figure`` is a 4-column grid of 7 panels of ``source``'s size over a legend."""
    grid = compose_panels([(title, source) for title in PRIOR_PANELS])
    assert figure.shape[1] == grid.shape[1] and figure.shape[0] > grid.shape[0]
    tile_h, tile_w = panel_tile_size(*source.shape[:2], 320)
    for cell in range(8):
        top = (cell // 4) * (TITLE_HEIGHT + tile_h + PANEL_GAP) + TITLE_HEIGHT
        left = (cell % 4) * (tile_w + PANEL_GAP)
        tile = figure[top : top + tile_h, left : left + tile_w]
        assert (tile < 250).any() == (cell < 7), cell


def test_parse_args_moves_overrides_after_the_inputs_to_opts():
    args = demo.parse_args(
        ["--config-file", "c.yaml", "--input", "a.png", "b/", "MODEL.WEIGHTS", "w"]
    )
    assert args.input == ["a.png", "b/"] and args.opts == ["MODEL.WEIGHTS", "w"]
    with pytest.raises(SystemExit):
        demo.parse_args(["--config-file", "c.yaml", "--input", "a.png", "--webcam"])


def test_runs_as_a_script():
    """`python demo/demo.py` finds its sibling modules (the script's folder is on sys.path)."""
    command = [sys.executable, str(DEMO_DIR / "demo.py"), "--help"]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "--confidence-threshold" in run.stdout


def test_expand_inputs_reads_files_globs_and_folders(image_dir: Path):
    files, unmatched = demo.expand_inputs(
        [str(image_dir), str(image_dir / "c*.png"), str(image_dir / "gray.png"), "nothing/*.jpg"]
    )
    names = [path.name for path in files]  # each file once
    assert names == ["broken.png", "colour.png", "deep.png", "gray.png", "rgba.png"]
    assert unmatched == ["nothing/*.jpg"]


def test_output_names_are_distinct_keep_the_input_name_and_ignore_the_order(tmp_path):
    sources = [Path("x/a.jpg"), Path("y/a.jpg"), Path("a.png"), Path("b.png"), Path("c/b.jpg")]
    stems = demo.output_stems(sources)
    assert stems == {
        Path("x/a.jpg"): "x_a_jpg",
        Path("y/a.jpg"): "y_a_jpg",
        Path("a.png"): "a_png",
        Path("b.png"): "b_png",
        Path("c/b.jpg"): "b_jpg",
    }
    assert demo.output_stems(sources[::-1]) == stems
    assert demo.output_stems([Path("x/a.jpg"), Path("b.png")]) == {
        Path("x/a.jpg"): "a",
        Path("b.png"): "b",
    }
    paths = demo.output_paths(tmp_path, "a_jpg", False)
    assert [p.name for p in paths] == ["a_jpg.png", "a_jpg_priors.png", "a_jpg_labels.png"]
    single = demo.output_paths(tmp_path / "one.jpg", "b", True)
    assert [p.name for p in single] == ["one.jpg", "one_priors.jpg", "one_labels.png"]


def metadata_of(config: Path) -> Metadata:
    cfg = semask_cfg()
    cfg.merge_from_file(str(config))
    dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
    return resolve_metadata(dataset, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)


def test_images_are_segmented_and_bad_files_skipped(any_config, image_dir, tmp_path, caplog):
    out = tmp_path / "out"
    argv = ["--config-file", str(any_config), "--input", str(image_dir), "--output", str(out)]
    with caplog.at_level(logging.INFO):
        status = demo.main(argv + ["--show-priors", "--save-labels"])
    assert status == 1
    assert f"skipping {image_dir / 'broken.png'}: not a readable image file" in caplog.text
    assert "colour.png: 160x120 in" in caplog.text
    assert f"ignoring files without an image suffix in {image_dir}: ['notes.txt']" in caplog.text
    colors = np.array(metadata_of(any_config).stuff_colors, dtype=float)[:, ::-1]  # BGR
    for name in ["colour", "gray", "rgba", "deep"]:
        source = as_bgr(image_dir / f"{name}.png").astype(float)
        overlay = cv2.imread(str(out / f"{name}.png")).astype(float)
        labels = cv2.imread(str(out / f"{name}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == source.shape and labels.shape == source.shape[:2]
        assert labels.max() < len(colors)
        # Each pixel is the input blended half and half with its predicted class colour
        # (up to region outlines and class names).
        blend = 0.5 * source + 0.5 * colors[labels]
        assert np.median(np.abs(overlay - blend)) <= 2, name
        assert np.abs(overlay - source).mean() > 5, name
        assert_seven_panels(cv2.imread(str(out / f"{name}_priors.png")), source)
    assert not (out / "broken.png").exists() and not (out / "notes.png").exists()


def test_single_image_to_a_file_side_by_side(config_file, tmp_path):
    source = tmp_path / "blocks.png"
    cv2.imwrite(str(source), colour_image(40, 56, 0))
    target = tmp_path / "result.jpg"
    argv = ["--config-file", str(config_file), "--input", str(source), "--output", str(target)]
    assert demo.main(argv + ["--side-by-side", "--save-labels"]) == 0
    panel = cv2.imread(str(target))
    assert panel.shape == (40, 112, 3)
    image = colour_image(40, 56, 0).astype(int)
    # JPEG blurs the block edges: compare medians of the per-pixel differences.
    assert np.median(np.abs(panel[:, :56] - image)) <= 3  # the input
    assert np.median(np.abs(panel[:, 56:] - image)) > 20  # the overlay
    # The stand-in labels a pixel by its strongest colour channel (B, G, R -> 2, 1, 0).
    labels = cv2.imread(str(tmp_path / "result_labels.png"), cv2.IMREAD_UNCHANGED)
    assert (labels == 2 - image.argmax(axis=2)).mean() > 0.9


def write_clip(path: Path, num_frames: int, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for seed in range(num_frames):
        writer.write(colour_image(48, 64, seed))
    writer.release()


def read_clip(path: Path) -> Tuple[List[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def test_video_keeps_its_frame_count(any_config, tmp_path):
    write_clip(tmp_path / "clip.avi", 3)
    out = tmp_path / "video_out"
    argv = ["--config-file", str(any_config), "--video-input", str(tmp_path / "clip.avi")]
    assert demo.main(argv + ["--output", str(out)]) == 0
    frames, fps = read_clip(out / "clip.mp4")
    assert len(frames) == 3 and fps == 10.0
    assert all(frame.shape == (48, 64, 3) for frame in frames)


def test_video_side_by_side_to_one_file(config_file, tmp_path):
    write_clip(tmp_path / "clip.avi", 4, fps=5.0)
    argv = ["--config-file", str(config_file), "--video-input", str(tmp_path / "clip.avi")]
    target = tmp_path / "panel.avi"
    assert demo.main(argv + ["--output", str(target), "--side-by-side"]) == 0
    frames, fps = read_clip(target)
    assert len(frames) == 4 and fps == 5.0
    assert all(frame.shape == (48, 128, 3) for frame in frames)
    with pytest.raises(SystemExit, match="clip.mkv for a video must end in .mp4/.avi"):
        demo.main(argv + ["--output", str(tmp_path / "clip.mkv")])


def test_bad_weights_stop_before_any_image(config_file, image_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--config-file", str(config_file), "--input", str(image_dir), "--output", str(out)]
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS '.*absent.pth' is no file"):
        demo.main(argv + ["MODEL.WEIGHTS", str(tmp_path / "absent.pth")])
    assert not out.exists()
    with pytest.raises(SystemExit, match="no input files found"):
        demo.main(["--config-file", str(config_file), "--input", str(tmp_path / "none*.png")])
    with pytest.raises(SystemExit, match="is one file for 5 inputs"):
        demo.main(argv[:4] + ["--output", str(tmp_path / "one.png")])
    with pytest.raises(SystemExit, match="could not open video file"):
        demo.main(["--config-file", str(config_file), "--video-input", str(tmp_path / "none.mp4")])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_config_sets_up_with_its_data_set_classes(config, caplog):
    args = demo.parse_args(["--config-file", str(config), "--input", "x.png"])
    cfg = build_cfg(args.config_file, args.opts)
    caplog.clear()
    test = cfg.MODEL.MASK_FORMER.TEST
    with caplog.at_level(logging.WARNING):
        metadata = resolve_metadata(
            cfg.DATASETS.TEST[0], cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, panoptic=test.PANOPTIC_ON
        )
    assert caplog.text == ""
    assert len(metadata.stuff_classes) == len(metadata.stuff_colors)
    assert len(metadata.stuff_classes) == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if test.PANOPTIC_ON or test.INSTANCE_ON:
        assert 0 < len(metadata.thing_classes) == len(metadata.thing_colors)


def test_semantic_fpn_config_draws_its_priors(image_dir, tmp_path):
    out = tmp_path / "fpn"
    argv = ["--config-file", str(SEMANTIC_FPN_CONFIG), "--input", str(image_dir / "colour.png")]
    argv += ["--output", str(out), "--show-priors"]
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS 'swin_tiny_patch4_window7_224.pkl'"):
        demo.main(argv)  # the ImageNet weights the config names are not here
    assert demo.main(argv + ["MODEL.WEIGHTS", ""] + TINY_SWIN) == 0
    source = as_bgr(image_dir / "colour.png")
    assert cv2.imread(str(out / "colour.png")).shape == source.shape
    assert_seven_panels(cv2.imread(str(out / "colour_priors.png")), source)


def test_priors_of_a_plain_swin_are_refused_before_any_image(image_dir, tmp_path):
    out = tmp_path / "plain"
    argv = ["--config-file", str(PLAIN_FPN_CONFIG), "--input", str(image_dir / "colour.png")]
    argv += ["--output", str(out), "--show-priors", "MODEL.WEIGHTS", ""] + TINY_SWIN
    with pytest.raises(SystemExit, match="backbone D2SwinTransformer has no semantic layers"):
        demo.main(argv)
    assert not out.exists()


def test_without_output_results_are_shown_until_escape(config_file, image_dir, monkeypatch):
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda window, image: shown.append((window, image.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: 27 if len(shown) >= 4 else 32)
    argv = ["--config-file", str(config_file), "--input", str(image_dir), "--show-priors"]
    assert demo.main(argv) == 1  # broken.png, first in order, was skipped
    windows = [window for window, _ in shown]
    assert windows == ["SeMask priors", "SeMask", "SeMask priors", "SeMask"]  # Esc after deep.png
    assert shown[1][1] == (120, 160, 3) and shown[3][1] == (160, 120, 3)


def test_a_missing_window_system_is_reported(config_file, image_dir, monkeypatch):
    def no_gui(window, image):
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "imshow", no_gui)
    argv = ["--config-file", str(config_file), "--input", str(image_dir / "colour.png")]
    with pytest.raises(SystemExit, match="cannot open a window .*; pass --output"):
        demo.main(argv)


def test_a_real_semask_model_writes_one_result_per_input_of_the_same_stem(tmp_path):
    overrides = tiny_semask_weights(tmp_path / "tiny.pth")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), colour_image(150, 200, 0))
    cv2.imwrite(str(folder / "a.png"), colour_image(120, 90, 1))
    out = tmp_path / "out"
    argv = ["--config-file", str(QUICKSTART_CONFIG), "--input", str(folder), "--output", str(out)]
    assert demo.main(argv + ["--show-priors", "--save-labels"] + overrides) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_jpg.png",
        "a_jpg_labels.png",
        "a_jpg_priors.png",
        "a_png.png",
        "a_png_labels.png",
        "a_png_priors.png",
    ]
    for name, shape in (("a_jpg", (150, 200)), ("a_png", (120, 90))):
        assert cv2.imread(str(out / f"{name}.png")).shape == shape + (3,)
        labels = cv2.imread(str(out / f"{name}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == shape and labels.max() < 7
        source = cv2.imread(str(folder / f"{name.replace('_', '.')}"))
        assert_seven_panels(cv2.imread(str(out / f"{name}_priors.png")), source)


def test_video_frames_are_the_overlays_of_the_input_frames(config_file, tmp_path):
    """Each written frame is the overlay the demo draws for that input frame (up to the codecs'
    loss), in order: a frame of another input is far further away."""
    write_clip(tmp_path / "clip.avi", 3)
    out = tmp_path / "clip_out.mp4"
    argv = ["--config-file", str(config_file), "--video-input", str(tmp_path / "clip.avi")]
    assert demo.main(argv + ["--output", str(out)]) == 0
    inputs, _ = read_clip(tmp_path / "clip.avi")
    written, _ = read_clip(out)
    args = demo.parse_args(argv)
    predictor = SeMaskPredictor(build_cfg(args.config_file, args.opts))
    expected = [
        demo.render(frame, predictor.predict(frame), predictor.metadata, args)[0][:, :, ::-1]
        for frame in inputs
    ]
    distance = np.array(
        [[np.abs(w.astype(int) - e.astype(int)).mean() for e in expected] for w in written]
    )
    assert np.all(np.diag(distance) < 20)  # mp4v at 64x48 is lossy: 12-16 measured
    assert np.all(distance[~np.eye(3, dtype=bool)] > 2 * np.diag(distance).max())  # 44-49


@pytest.fixture(scope="module")
def universal_model(tmp_path_factory) -> List[str]:
    """Overrides of the quick-start config for a tiny panoptic + instance + semantic model."""
    return universal_weights(tmp_path_factory.mktemp("universal") / "tiny.pth")


def drawn_by_the_demo(options: List[str], out: Path, overrides: List[str]) -> np.ndarray:
    """The RGB picture the demo writes to ``out`` (jittered colours seeded)."""
    np.random.seed(0)
    assert demo.main(options + ["--output", str(out)] + overrides) == 0
    return cv2.imread(str(out if out.suffix else out / "blocks.png"))[:, :, ::-1]


@pytest.mark.parametrize("task", ["panoptic", "instance", "semantic"])
def test_a_universal_model_draws_each_task(universal_model, task, tmp_path):
    source = tmp_path / "blocks.png"
    cv2.imwrite(str(source), colour_image(60, 80, 0))
    options = ["--config-file", str(QUICKSTART_CONFIG), "--input", str(source)]
    options += ["--confidence-threshold", "0", "--show-priors", "--save-labels"]
    drawn = drawn_by_the_demo(options + ["--task", task], tmp_path / "out", universal_model)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["blocks.png", "blocks_labels.png", "blocks_priors.png"]
    assert drawn.shape == (60, 80, 3)
    args = demo.parse_args(options + ["--task", task] + universal_model)
    predictor = SeMaskPredictor(build_cfg(args.config_file, args.opts))
    image = colour_image(60, 80, 0)
    prediction = predictor.predict(image)
    np.random.seed(0)
    expected = demo.render(image, prediction, predictor.metadata, args)[0]
    assert np.array_equal(drawn, expected)
    if task == "panoptic":
        ids = prediction.panoptic_seg[0].numpy()
        changed = np.abs(drawn.astype(int) - image[:, :, ::-1]).max(axis=2) > 10
        assert ids.any() and changed[ids > 0].mean() > 0.9


def test_the_default_task_is_the_richest_result_of_the_prediction():
    instances = Instances((2, 2))
    panoptic = (torch.zeros(2, 2, dtype=torch.int32), [])
    labels = torch.zeros(2, 2, dtype=torch.int64)
    assert demo.drawn_task(Prediction(labels=labels), None) == "semantic"
    assert demo.drawn_task(Prediction(labels=labels, instances=instances), None) == "instance"
    everything = Prediction(labels=labels, instances=instances, panoptic_seg=panoptic)
    assert demo.drawn_task(everything, None) == "panoptic"
    assert demo.drawn_task(everything, "semantic") == "semantic"


def test_instances_below_the_confidence_threshold_are_not_drawn(universal_model, tmp_path):
    source = tmp_path / "blocks.png"
    cv2.imwrite(str(source), colour_image(60, 80, 0))
    options = ["--config-file", str(QUICKSTART_CONFIG), "--input", str(source)]
    options += ["--task", "instance", "--confidence-threshold"]
    none = drawn_by_the_demo(options + ["1"], tmp_path / "none.png", universal_model)
    assert np.array_equal(none, colour_image(60, 80, 0)[:, :, ::-1])
    every = drawn_by_the_demo(options + ["0"], tmp_path / "every.png", universal_model)
    assert (every != none).any(axis=2).mean() > 0.5


def test_results_the_model_does_not_infer_are_refused_before_any_image(
    config_file, universal_model, image_dir, tmp_path
):
    out = tmp_path / "out"
    argv = ["--config-file", str(config_file), "--input", str(image_dir), "--output", str(out)]
    with pytest.raises(
        SystemExit, match="--task panoptic needs MODEL.MASK_FORMER.TEST.PANOPTIC_ON"
    ):
        demo.main(argv + ["--task", "panoptic"])
    instance_only = universal_model + universal_opts(panoptic=False, semantic=False)
    argv[1] = str(QUICKSTART_CONFIG)
    with pytest.raises(SystemExit, match="--save-labels needs MODEL.MASK_FORMER.TEST.SEMANTIC_ON"):
        demo.main(argv + ["--save-labels"] + instance_only)
    with pytest.raises(SystemExit, match="--show-priors needs .*SEMANTIC_ON True \\(the model"):
        demo.main(argv + ["--show-priors"] + instance_only)
    assert not out.exists()
