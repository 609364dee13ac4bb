"""Segment images, a video or a webcam stream with a SeMask model and draw the results.

Examples::

    python demo/demo.py --config-file configs/quickstart/semask_swin_mask2former_quickstart.yaml \
        --input "images/*.jpg" --output out/ --show-priors --save-labels \
        MODEL.WEIGHTS output/quickstart/model_final.pth
    python demo/demo.py --config-file CONFIG --video-input clip.mp4 --output out/ MODEL.WEIGHTS W
    python demo/demo.py --config-file configs/coco/panoptic-segmentation/CONFIG.yaml \
        --input image.jpg --output out/ --task instance --confidence-threshold 0.7 MODEL.WEIGHTS W
"""

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import cv2
import numpy as np
from demo_paths import IMAGE_SUFFIXES, expand_inputs, output_paths, output_stems
from detectron2.config import CfgNode
from detectron2.data.catalog import Metadata
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import semask.data  # noqa: F401  (registers the data sets and their metadata)
from semask.data import image_io
from semask.engine import build_cfg
from semask.predictor import Prediction, SeMaskPredictor
from semask.visualization import (
    draw_instances,
    draw_overlay,
    draw_panoptic,
    draw_priors_figure,
    side_by_side,
)
from semask.writers import save_image, save_label_png

logger = logging.getLogger("semask.demo")

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
WINDOW = "SeMask"
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")
# The MODEL.MASK_FORMER.TEST key that makes the model infer each task's result.
TASK_KEYS = {"panoptic": "PANOPTIC_ON", "instance": "INSTANCE_ON", "semantic": "SEMANTIC_ON"}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, glob patterns or folders")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--webcam", action="store_true", help="the first webcam")
    parser.add_argument(
        "--output",
        help="output folder, or one file (an image for a single --input, .mp4/.avi for a video); "
        "without it results are shown in a window",
    )
    parser.add_argument("--show-priors", action="store_true", help="also draw the semantic priors")
    parser.add_argument(
        "--side-by-side", action="store_true", help="input and overlay side by side"
    )
    parser.add_argument("--save-labels", action="store_true", help="also write label-map PNGs")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the overlay")
    parser.add_argument(
        "--task",
        choices=list(TASK_KEYS),
        help="the result to draw (default: the richest the model infers: panoptic, instance, "
        "semantic)",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="instances scoring at most this are not drawn (--task instance)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="--input images per forward pass (same results; images of one size are batched)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line; ``KEY VALUE`` overrides right after ``--input`` files go to opts."""
    args = get_parser().parse_args(argv)
    if args.input:
        first_key = next((i for i, item in enumerate(args.input) if CONFIG_KEY.match(item)), None)
        if first_key == 0:
            raise SystemExit(f"--input needs files before the overrides, got {args.input}")
        if first_key is not None:
            args.opts = args.input[first_key:] + args.opts
            args.input = args.input[:first_key]
    return args


def read_image(path: Path) -> Optional[np.ndarray]:
    """BGR uint8 [H, W, 3] image of ``path`` (by :func:`semask.data.image_io.read_image`: EXIF
    orientation applied), or None (logged, naming the file) if unreadable or truncated."""
    try:
        return image_io.read_image(str(path), format="BGR")
    except image_io.ImageReadError as error:
        logger.error(f"skipping {error}")
        return None


def drawn_task(prediction: Prediction, task: Optional[str]) -> str:
    """``task`` (--task), or by default the richest result ``prediction`` holds."""
    if task is not None:
        return task
    if prediction.panoptic_seg is not None:
        return "panoptic"
    return "semantic" if prediction.instances is None else "instance"


def draw_result(
    image: np.ndarray, prediction: Prediction, metadata: Metadata, args: argparse.Namespace
) -> np.ndarray:
    """The RGB image [H, W, 3] with the result of :func:`drawn_task` drawn over it."""
    task = drawn_task(prediction, args.task)
    if task == "panoptic":
        return draw_panoptic(image, *prediction.panoptic_seg, metadata, alpha=args.alpha)
    if task == "instance":
        instances = prediction.instances
        return draw_instances(
            image, instances[instances.scores > args.confidence_threshold], metadata
        )
    return draw_overlay(image, prediction.labels, metadata, alpha=args.alpha)


def render(
    image_bgr: np.ndarray,
    prediction: Prediction,
    metadata: Metadata,
    args: argparse.Namespace,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The RGB picture of :func:`draw_result` (with --side-by-side: input | picture) and the
    priors figure if there are priors to draw (--show-priors)."""
    image = image_bgr[:, :, ::-1]
    picture = draw_result(image, prediction, metadata, args)
    if args.side_by_side:
        picture = side_by_side(image, picture)
    if prediction.sem_prior is None:
        return picture, None
    priors = draw_priors_figure(
        image, prediction.labels, prediction.sem_prior, prediction.stage_priors, metadata
    )
    return picture, priors


def check_outputs(cfg: CfgNode, args: argparse.Namespace) -> None:
    """SystemExit naming the option and the config key if the model of ``cfg`` does not infer
    what an option draws or writes: --task's result; semantic labels for --show-priors (its last
    panel) and --save-labels."""
    wanted = {args.task: f"--task {args.task}"} if args.task else {}
    for option, asked in (("--show-priors", args.show_priors), ("--save-labels", args.save_labels)):
        if asked:
            wanted.setdefault("semantic", option)
    for task, option in wanted.items():
        if not cfg.MODEL.MASK_FORMER.TEST[TASK_KEYS[task]]:
            raise SystemExit(
                f"error: {option} needs MODEL.MASK_FORMER.TEST.{TASK_KEYS[task]} True "
                f"(the model infers no {task} segmentation)"
            )


def show(picture_rgb: np.ndarray, wait_ms: int, window: str = WINDOW) -> bool:
    """Show an RGB picture in ``window``; False once the user pressed Esc."""
    try:
        cv2.imshow(window, picture_rgb[:, :, ::-1])
        return cv2.waitKey(wait_ms) != 27
    except cv2.error as error:
        raise SystemExit(
            f"error: cannot open a window ({str(error).strip()}); pass --output"
        ) from error


def emit(
    predictor: SeMaskPredictor,
    path: Path,
    image: np.ndarray,
    prediction: Prediction,
    stem: str,
    single: bool,
    args: argparse.Namespace,
) -> bool:
    """Draw one image's result and write it under --output (or show it); False once the user
    pressed Esc."""
    picture, priors = render(image, prediction, predictor.metadata, args)
    if args.output is None:
        if priors is not None:
            show(priors, 1, window=f"{WINDOW} priors")
        return show(picture, 0)
    main, priors_path, labels_path = output_paths(Path(args.output), stem, single)
    save_image(main, picture)
    if priors is not None:
        save_image(priors_path, priors)
    if args.save_labels:
        save_label_png(labels_path, prediction.labels)
    return True


def run_images(predictor: SeMaskPredictor, paths: Sequence[Path], args: argparse.Namespace) -> int:
    """Segment the images ``paths``, ``--batch-size`` at a time; return the number of them that
    could not be read."""
    skipped, stems = 0, output_stems(paths)
    with tqdm(total=len(paths), desc="images", disable=len(paths) < 2) as progress:
        for first in range(0, len(paths), args.batch_size):
            chunk = paths[first : first + args.batch_size]
            loaded = [(path, read_image(path)) for path in chunk]
            loaded = [(path, image) for path, image in loaded if image is not None]
            skipped += len(chunk) - len(loaded)
            start = time.perf_counter()
            predictions = predictor.predict_batch([image for _, image in loaded], args.batch_size)
            seconds = (time.perf_counter() - start) / max(len(loaded), 1)
            for (path, image), prediction in zip(loaded, predictions):
                logger.info(f"{path}: {image.shape[1]}x{image.shape[0]} in {seconds:.3f} s")
                if not emit(predictor, path, image, prediction, stems[path], len(paths) == 1, args):
                    return skipped
            progress.update(len(chunk))
    return skipped


def frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def video_writer(output: Path, source: str, fps: float, size: Tuple[int, int]) -> cv2.VideoWriter:
    """A writer for ``output`` (a .mp4/.avi file, or a folder that gets ``<source stem>.mp4``)."""
    path = output if output.suffix.lower() in VIDEO_CODECS else output / f"{Path(source).stem}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = cv2.VideoWriter_fourcc(*VIDEO_CODECS[path.suffix.lower()])
    writer = cv2.VideoWriter(str(path), codec, fps, size)
    if not writer.isOpened():
        raise OSError(f"could not open video file {path} for writing")
    logger.info(f"writing {path}")
    return writer


def open_capture(args: argparse.Namespace) -> cv2.VideoCapture:
    """The --webcam or --video-input stream; SystemExit naming it if it cannot be opened."""
    capture = cv2.VideoCapture(0 if args.webcam else args.video_input)
    if not capture.isOpened():
        source = "the webcam" if args.webcam else f"video file {args.video_input}"
        raise SystemExit(f"error: could not open {source}")
    return capture


def run_video(
    predictor: SeMaskPredictor, capture: cv2.VideoCapture, args: argparse.Namespace
) -> None:
    """Segment every frame of ``capture``; write the overlays to a video or show them."""
    if args.show_priors:
        logger.warning("--show-priors draws priors for --input images only, not for video frames")
    total = None if args.webcam else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer, count, seconds = None, 0, 0.0
    try:
        for frame in tqdm(frames(capture), desc="frames", total=total):
            start = time.perf_counter()
            prediction = predictor.predict(frame)
            seconds += time.perf_counter() - start
            count += 1
            picture, _ = render(frame, prediction, predictor.metadata, args)
            if args.output is None:
                if not show(picture, 1):
                    break
                continue
            if writer is None:
                source = "webcam" if args.webcam else args.video_input
                size = (picture.shape[1], picture.shape[0])
                writer = video_writer(Path(args.output), source, fps, size)
            writer.write(np.ascontiguousarray(picture[:, :, ::-1]))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if count:
        logger.info(f"{count} frames, {seconds / count:.3f} s per frame")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; the exit status is 1 if an input was skipped, else 0.

    Inputs, the video source and MODEL.WEIGHTS are checked before any image is processed.
    """
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be >= 1, got {args.batch_size}")
    cfg = build_cfg(args.config_file, args.opts)
    check_outputs(cfg, args)
    if args.input:
        paths, unmatched = expand_inputs(args.input)
        for pattern in unmatched:
            logger.error(f"skipping --input {pattern!r}: no such file, folder or matching file")
        if not paths:
            raise SystemExit(f"error: no input files found in --input {args.input}")
        if len(paths) > 1 and args.output and Path(args.output).suffix.lower() in IMAGE_SUFFIXES:
            raise SystemExit(f"error: --output {args.output} is one file for {len(paths)} inputs")
    else:
        output = Path(args.output or ".")
        if output.suffix and output.suffix.lower() not in VIDEO_CODECS and not output.is_dir():
            raise SystemExit(
                f"error: --output {output} for a video must end in .mp4/.avi or be a folder"
            )
        capture = open_capture(args)
    try:
        predictor = SeMaskPredictor(cfg, return_priors=args.show_priors and bool(args.input))
    except ValueError as error:  # WeightsError included: bad MODEL.WEIGHTS, INPUT.FORMAT, priors
        raise SystemExit(f"error: {error}") from error
    if args.input:
        return int(run_images(predictor, paths, args) + len(unmatched) > 0)
    run_video(predictor, capture, args)
    return 0


if __name__ == "__main__":
    setup_logger(name="semask")
    setup_logger(name="detectron2")
    sys.exit(main())
