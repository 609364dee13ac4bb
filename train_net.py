"""Train or evaluate a SeMask model, the detectron2 way.

    python train_net.py --config-file CONFIG [--num-gpus N] [--resume] [--eval-only] [KEY VALUE ...]

Without CUDA, ``--num-gpus N`` starts N CPU processes joined by gloo.
"""

import argparse
from typing import Any

import semask  # noqa: F401  (first: applies semask.compat before detectron2 is used)

# isort: split
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, hooks
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from semask.engine import Trainer, launch, setup_cfg


def main(args: argparse.Namespace) -> Any:
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
        return results

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        trainer.register_hooks(
            [hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))]
        )
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
