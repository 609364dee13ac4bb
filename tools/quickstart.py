"""The quick-start (``make quickstart [TASK=panoptic]``): data set, training, evaluation and
pictures in one go.

1. generates the task's quick-start data set under ``$DETECTRON2_DATASETS`` if it is absent
   (``quickstart/`` for ``--task semantic``, ``quickstart_panoptic/`` for ``--task panoptic``);
2. trains the small SeMask Swin + Mask2Former of ``configs/quickstart/`` on it, in one
   single-threaded process per core (up to 2, joined by gloo: this model's ops are too small to
   gain from intra-op threads);
3. evaluates it on the validation split with the trainer's evaluators: mIoU (``SemSegEvaluator``),
   and for ``panoptic`` also PQ, SQ and RQ, of things and of stuff (``COCOPanopticEvaluator``);
4. draws image | ground truth | prediction for a few validation images;
5. prints where everything is.

    python tools/quickstart.py [--task semantic|panoptic] [--config-file F] [--num-vis N]
        [--num-processes N] [KEY VALUE ...]
"""

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.utils import comm
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from semask.curves import CURVES_FILE
from semask.data.panoptic_labels import rgb_to_id
from semask.data.quickstart import generate, is_generated
from semask.data.quickstart_panoptic import (
    QUICKSTART_PANOPTIC,
    generate_panoptic,
    is_panoptic_generated,
)
from semask.engine import Trainer, launch, setup_cfg
from semask.io import atomic_path
from semask.visualization import draw_overlay, side_by_side
from semask.writers import save_image

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs" / "quickstart"
VIS_SCALE = 4


@dataclass(frozen=True)
class Task:
    """What one quick-start trains on: its default config and its generated data set (a folder
    under the data root, written by ``generate`` unless ``is_generated``)."""

    config: Path
    data_folder: str
    generate: Callable[[Path], Path]
    is_generated: Callable[[Path], bool]


TASKS: Dict[str, Task] = {
    "semantic": Task(
        CONFIG_DIR / "semask_swin_mask2former_quickstart.yaml", "quickstart", generate, is_generated
    ),
    "panoptic": Task(
        CONFIG_DIR / "semask_swin_mask2former_quickstart_panoptic.yaml",
        QUICKSTART_PANOPTIC,
        generate_panoptic,
        is_panoptic_generated,
    ),
}


def _upscale(image: np.ndarray) -> np.ndarray:
    return image.repeat(VIS_SCALE, 0).repeat(VIS_SCALE, 1)


def semantic_panels(record: Dict[str, Any], output: Dict[str, Any], metadata: Any) -> List:
    """Ground truth and predicted class maps of one image, drawn over it (RGB uint8 each)."""
    image = _upscale(np.asarray(Image.open(record["file_name"]).convert("RGB")))
    truth = _upscale(np.asarray(Image.open(record["sem_seg_file_name"])))
    prediction = _upscale(output["sem_seg"].argmax(0).cpu().numpy())
    overlays = [draw_overlay(image, labels, metadata, 0.6, True) for labels in (truth, prediction)]
    return [image, *overlays]


def panoptic_panels(record: Dict[str, Any], output: Dict[str, Any], metadata: Any) -> List:
    """Ground truth and predicted segments of one image, drawn over it by detectron2's
    ``Visualizer.draw_panoptic_seg`` (RGB uint8 each; thing colours jittered per instance)."""
    image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
    truth = torch.from_numpy(rgb_to_id(np.asarray(Image.open(record["pan_seg_file_name"]))))
    prediction, predicted_segments = output["panoptic_seg"]
    panels = [_upscale(image)]
    for segment_ids, segments in (
        (truth, record["segments_info"]),
        (prediction, predicted_segments),
    ):
        visualizer = Visualizer(image, metadata, scale=VIS_SCALE)
        drawn = visualizer.draw_panoptic_seg(segment_ids.cpu(), segments, alpha=0.6)
        panels.append(drawn.get_image())
    return panels


PANELS = {"semantic": semantic_panels, "panoptic": panoptic_panels}


@torch.no_grad()
def write_visualizations(
    cfg: Any, model: torch.nn.Module, task: str, out_dir: Path, count: int
) -> List[Path]:
    """Save image | ground truth | prediction for the first ``count`` images of the test set."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset_name = cfg.DATASETS.TEST[0]
    metadata = MetadataCatalog.get(dataset_name)
    mapper = DatasetMapper(cfg, is_train=False)
    model.eval()
    written = []
    for record in DatasetCatalog.get(dataset_name)[:count]:
        output = model([mapper(record)])[0]
        path = out_dir / f"{Path(record['file_name']).stem}.png"
        save_image(path, side_by_side(*PANELS[task](record, output, metadata)))
        written.append(path)
    return written


def evaluation_results(trainer: Trainer) -> Dict[str, Dict[str, float]]:
    """The final evaluation's results by evaluator (``sem_seg``, ``panoptic_seg``), from the
    scalars the evaluation hook stores (main process only)."""
    results: Dict[str, Dict[str, float]] = {}
    for key, (value, _) in trainer.storage.latest().items():
        evaluator, _, metric = key.partition("/")
        if evaluator in ("sem_seg", "panoptic_seg") and metric:
            results.setdefault(evaluator, {})[metric] = value
    return results


def summarize(results: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    """The quick-start's metrics: mIoU, pixel accuracy, IoU per class and, with panoptic
    results, PQ, SQ, RQ over all classes, things and stuff."""
    semantic = results["sem_seg"]
    summary: Dict[str, Any] = {}
    if "panoptic_seg" in results:
        panoptic = results["panoptic_seg"]
        summary.update({key: panoptic[key] for key in ("PQ", "SQ", "RQ")})
        for group, suffix in (("things", "_th"), ("stuff", "_st")):
            summary[group] = {key: panoptic[key + suffix] for key in ("PQ", "SQ", "RQ")}
    summary.update(
        {
            "mIoU": semantic["mIoU"],
            "pixel_accuracy": semantic["pACC"],
            "per_class_IoU": {k[4:]: v for k, v in semantic.items() if k.startswith("IoU-")},
        }
    )
    return summary


def print_summary(summary: Dict[str, Any], dataset_name: str) -> None:
    """Print the metrics of :func:`summarize`."""
    if "PQ" in summary:
        print(f"  panoptic quality on {dataset_name}:")
        for name in ("all", "things", "stuff"):
            scores = summary if name == "all" else summary[name]
            values = "  ".join(f"{key} {scores[key]:6.2f}" for key in ("PQ", "SQ", "RQ"))
            print(f"    {name:<7} {values}")
    accuracy = summary["pixel_accuracy"]
    print(f"  mIoU on {dataset_name}: {summary['mIoU']:.2f} (pixel accuracy {accuracy:.2f})")
    for name, iou in summary["per_class_IoU"].items():
        print(f"    {name:<12} IoU {iou:6.2f}")


def run(args: argparse.Namespace, data_root: Path, start: float) -> None:
    """Train, evaluate and (on the main process) draw and report; runs in every process."""
    # One thread per process: this model's ops are too small to gain from intra-op threads, and
    # extra threads spin and slow everything down on a busy machine.
    torch.set_num_threads(1)
    cfg = setup_cfg(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # ends with the evaluation hook: the trainer's evaluators on DATASETS.TEST
    train_minutes = (time.time() - start) / 60
    if not comm.is_main_process():
        return
    output_dir = Path(cfg.OUTPUT_DIR)
    dataset_name = cfg.DATASETS.TEST[0]
    vis_dir = output_dir / "visualizations"
    model = trainer.model.module if comm.get_world_size() > 1 else trainer.model
    write_visualizations(cfg, model, args.task, vis_dir, args.num_vis)
    summary = summarize(evaluation_results(trainer))
    summary.update(
        {
            "train_minutes": train_minutes,
            "total_minutes": (time.time() - start) / 60,
            "iterations": cfg.SOLVER.MAX_ITER,
            "processes": comm.get_world_size(),
        }
    )
    metrics_file = output_dir / "quickstart_results.json"
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))

    print(f"\nSeMask {args.task} quick-start finished in {summary['total_minutes']:.1f} min")
    print_summary(summary, dataset_name)
    print(f"  data set:        {data_root.resolve()}")
    print(f"  model weights:   {(output_dir / 'model_final.pth').resolve()}")
    print(f"  config:          {(output_dir / 'config.yaml').resolve()}")
    print(f"  metrics:         {metrics_file.resolve()} (TensorBoard logs in the same folder)")
    print(f"  visualizations:  {vis_dir.resolve()} (image | ground truth | prediction)")
    print(f"  report:          {(output_dir / 'inference' / 'report' / dataset_name).resolve()}")
    print(f"  training curves: {(output_dir / CURVES_FILE).resolve()}")


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The command line; ``--config-file`` defaults to the config of ``--task``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="semantic")
    parser.add_argument("--config-file", help="default: the task's config in configs/quickstart/")
    parser.add_argument("--num-vis", type=int, default=8, help="validation images to draw")
    parser.add_argument(
        "--num-processes",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="training processes (on a CPU: one single-threaded gloo process per core, up to 2)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.config_file is None:
        args.config_file = str(TASKS[args.task].config)
    return args


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    start = time.time()
    task = TASKS[args.task]
    data_root = Path(os.getenv("DETECTRON2_DATASETS", "datasets")) / task.data_folder
    if not task.is_generated(data_root):
        task.generate(data_root)
    launch(run, args.num_processes, dist_url="auto", args=(args, data_root, start))


if __name__ == "__main__":
    main(sys.argv[1:])
