"""Train or evaluate a SeMask model, the detectron2 way.

    python train_net.py --config-file CONFIG [--num-gpus N] [--resume] [--eval-only] [KEY VALUE ...]

Without CUDA, ``--num-gpus N`` starts N CPU processes joined by gloo. Weights are read without
unpickling code (see semask.checkpoint); ``--eval-only`` refuses weights that leave parameters
unloaded unless ``TEST.ALLOW_PARTIAL_WEIGHTS True``.
"""

import argparse
import logging
from typing import Any

from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, hooks
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from torch import nn

from semask.checkpoint import SeMaskCheckpointer
from semask.engine import Trainer, launch, setup_cfg

logger = logging.getLogger("semask.train_net")


def load_for_evaluation(cfg: CfgNode, model: nn.Module, resume: bool) -> None:
    """Load ``MODEL.WEIGHTS`` (or, with ``resume``, the newest usable checkpoint of OUTPUT_DIR)
    into ``model`` for evaluation: strictly unless ``TEST.ALLOW_PARTIAL_WEIGHTS``, and with a loud
    warning when nothing is loaded."""
    checkpointer = SeMaskCheckpointer(
        model,
        cfg.OUTPUT_DIR,
        strict=not cfg.TEST.ALLOW_PARTIAL_WEIGHTS,
        allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE,
        save_to_disk=False,  # writes nothing, and leaves a running training's temporaries alone
    )
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    if checkpointer.loaded_file is None:
        logger.warning(
            "MODEL.WEIGHTS is empty and no checkpoint was resumed: EVALUATING RANDOM WEIGHTS; "
            "the results are meaningless"
        )


def main(args: argparse.Namespace) -> Any:
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        load_for_evaluation(cfg, model, args.resume)
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
