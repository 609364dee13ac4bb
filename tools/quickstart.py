"""The quick-start (``make quickstart``): data set, training, evaluation and pictures in one go.

1. generates the quick-start data set under ``$DETECTRON2_DATASETS/quickstart`` if it is absent;
2. trains the small SeMask Swin + Mask2Former of ``configs/quickstart/`` on it, in one
   single-threaded process per core (up to 2, joined by gloo: this model's ops are too small to
   gain from intra-op threads);
3. evaluates it on the validation split with detectron2's ``SemSegEvaluator``;
4. draws image | ground truth | prediction for a few validation images;
5. prints where everything is.

    python tools/quickstart.py [--config-file F] [--num-vis N] [--num-processes N] [KEY VALUE ...]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, List

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.utils import comm
from PIL import Image

from semask.curves import CURVES_FILE
from semask.data.quickstart import generate, is_generated
from semask.engine import Trainer, launch, setup_cfg
from semask.io import atomic_path
from semask.visualization import draw_overlay, side_by_side
from semask.writers import save_image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"
VIS_SCALE = 4


@torch.no_grad()
def write_visualizations(
    cfg: Any, model: torch.nn.Module, dataset_name: str, out_dir: Path, count: int
) -> List[Path]:
    """Save image | ground truth | prediction for the first ``count`` images of the data set."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataCatalog.get(dataset_name)
    mapper = DatasetMapper(cfg, is_train=False)
    model.eval()
    written = []
    for record in DatasetCatalog.get(dataset_name)[:count]:
        image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
        truth = np.asarray(Image.open(record["sem_seg_file_name"]))
        prediction = model([mapper(record)])[0]["sem_seg"].argmax(0).cpu().numpy()
        image, truth, prediction = (
            array.repeat(VIS_SCALE, 0).repeat(VIS_SCALE, 1) for array in (image, truth, prediction)
        )
        overlays = [
            draw_overlay(image, labels, metadata, 0.6, True) for labels in (truth, prediction)
        ]
        path = out_dir / f"{Path(record['file_name']).stem}.png"
        save_image(path, side_by_side(image, *overlays))
        written.append(path)
    return written


def run(args: argparse.Namespace, data_root: Path, start: float) -> None:
    """Train, evaluate and (on the main process) draw and report; runs in every process."""
    # One thread per process: this model's ops are too small to gain from intra-op threads, and
    # extra threads spin and slow everything down on a busy machine.
    torch.set_num_threads(1)
    cfg = setup_cfg(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # ends with the evaluation hook: SemSegEvaluator on DATASETS.TEST
    train_minutes = (time.time() - start) / 60
    if not comm.is_main_process():
        return
    output_dir = Path(cfg.OUTPUT_DIR)
    # Written by the SemSegEvaluator that Trainer.build_evaluator gives the final evaluation.
    results = torch.load(output_dir / "inference" / "sem_seg_evaluation.pth", weights_only=False)
    dataset_name = cfg.DATASETS.TEST[0]
    vis_dir = output_dir / "visualizations"
    model = trainer.model.module if comm.get_world_size() > 1 else trainer.model
    write_visualizations(cfg, model, dataset_name, vis_dir, args.num_vis)
    summary = {
        "mIoU": results["mIoU"],
        "pixel_accuracy": results["pACC"],
        "per_class_IoU": {k[4:]: v for k, v in results.items() if k.startswith("IoU-")},
        "train_minutes": train_minutes,
        "total_minutes": (time.time() - start) / 60,
        "iterations": cfg.SOLVER.MAX_ITER,
        "processes": comm.get_world_size(),
    }
    metrics_file = output_dir / "quickstart_results.json"
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))

    print(f"\nSeMask quick-start finished in {summary['total_minutes']:.1f} min")
    print(f"  mIoU on {dataset_name}: {summary['mIoU']:.2f} (pixel accuracy {results['pACC']:.2f})")
    for name, iou in summary["per_class_IoU"].items():
        print(f"    {name:<12} IoU {iou:6.2f}")
    print(f"  data set:        {data_root.resolve()}")
    print(f"  model weights:   {(output_dir / 'model_final.pth').resolve()}")
    print(f"  config:          {(output_dir / 'config.yaml').resolve()}")
    print(f"  metrics:         {metrics_file.resolve()} (TensorBoard logs in the same folder)")
    print(f"  visualizations:  {vis_dir.resolve()} (image | ground truth | prediction)")
    print(f"  report:          {(output_dir / 'inference' / 'report' / dataset_name).resolve()}")
    print(f"  training curves: {(output_dir / CURVES_FILE).resolve()}")


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=str(DEFAULT_CONFIG))
    parser.add_argument("--num-vis", type=int, default=8, help="validation images to draw")
    parser.add_argument(
        "--num-processes",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="training processes (on a CPU: one single-threaded gloo process per core, up to 2)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)

    start = time.time()
    data_root = Path(os.getenv("DETECTRON2_DATASETS", "datasets")) / "quickstart"
    if not is_generated(data_root):
        generate(data_root)
    launch(run, args.num_processes, dist_url="auto", args=(args, data_root, start))


if __name__ == "__main__":
    main(sys.argv[1:])
