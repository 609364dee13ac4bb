"""The config of a run: detectron2's defaults, SeMask's keys, a YAML file and command-line
overrides (:func:`build_cfg`), checked and set up for a run from command-line arguments
(:func:`setup_cfg`)."""

import argparse
import logging
from typing import List, Sequence

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import add_semask_config
from .num_classes import resolve_num_classes
from .validation import validate_config


def override_pairs(opts: Sequence[str]) -> List[str]:
    """``opts`` as KEY VALUE pairs for ``merge_from_list``, without the ``--`` that may stand
    between pairs (argparse's REMAINDER keeps the separator a command line puts before them).

    Raises ValueError naming the KEY that has no VALUE.
    """
    pairs, rest = [], list(opts)
    while rest:
        key = rest.pop(0)
        if key == "--":
            continue
        if not rest:
            raise ValueError(
                f"config override {key!r} has no value: overrides are KEY VALUE pairs, got "
                f"{list(opts)}"
            )
        pairs += [key, rest.pop(0)]
    return pairs


def build_cfg(config_file: str, opts: Sequence[str]) -> CfgNode:
    """A frozen config: detectron2 defaults + SeMask keys + ``config_file`` + ``opts``
    (:func:`override_pairs`).

    ``MODEL.SEM_SEG_HEAD.NUM_CLASSES 0`` becomes the training set's class count
    (:func:`resolve_num_classes`). A CUDA ``MODEL.DEVICE`` falls back to ``cpu`` when no GPU is
    available.
    """
    cfg = get_cfg()
    add_semask_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(override_pairs(opts))
    resolve_num_classes(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available: MODEL.DEVICE set to cpu")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Build the config from command-line ``args`` (detectron2's argument parser), check it
    (:func:`validate_config`: a :class:`ConfigError` names every bad key before anything is
    written or loaded) and set up the run with detectron2's ``default_setup``: output folder,
    loggers (``semask``'s too), environment report, ``config.yaml`` in the output folder, seeds."""
    cfg = build_cfg(args.config_file, args.opts)
    validate_config(cfg)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="semask")
    return cfg
