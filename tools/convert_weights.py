#!/usr/bin/env python
"""Convert backbone checkpoints to SeMask/Detectron2 weights.

    python tools/convert_weights.py swin-microsoft swin_tiny_patch4_window7_224.pth swin_t.pkl
    python tools/convert_weights.py swin-timm timm_swin_t.pth swin_t.pkl
    python tools/convert_weights.py semask semask_large_mask2former_ade20k.pth semask_l.pkl
    python tools/convert_weights.py mit mit_b2.pth mit_b2.pkl \
        --config configs/ade20k/semantic_fpn/semask_mit_b2_bs16_80k_res512.yaml
    python tools/convert_weights.py semask-fpn semfpn_semask_swin_tiny_ade20k.pth semfpn_t.pkl \
        --config configs/ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml

With ``--config`` the result is first loaded into that config's backbone (missing keys are
listed; shape mismatches are errors). ``semask-fpn`` converts a whole SeMask-FPN mmseg model
(backbone and decode head); with ``--config`` it must fit that config's model exactly, windowing
included. The output holds ``backbone.``-prefixed entries (whole-model names for ``semask-fpn``):
``.pkl`` in
Detectron2's model-zoo format, ``.safetensors`` as safetensors, ``.pth``/``.pt`` as
``torch.save({"model": ...})``. Use it as MODEL.WEIGHTS.

The input is read by semask.checkpoint.load_checkpoint_file, which runs no code the file carries;
``--allow-pickle`` unpickles it fully (only for files you trust).
"""

import argparse
import pickle
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone, build_model

from semask import add_semask_config
from semask.checkpoint import SUFFIXES, WeightsError, load_checkpoint_file, save_safetensors
from semask.io import atomic_path
from semask.modeling.backbone import convert
from semask.modeling.heads.semantic_fpn_convert import convert_semask_fpn_mmseg

CONVERTERS = {
    "swin-microsoft": convert.convert_swin_microsoft,
    "swin-timm": convert.convert_swin_timm,
    "semask": convert.convert_semask_official,
    "mit": convert.convert_mit,
    "semask-fpn": convert_semask_fpn_mmseg,
}
# Sources converted to whole-model names; the others give backbone names.
WHOLE_MODEL = ("semask-fpn",)
# Keys that a checkpoint of each source may lack (they are new in SeMask or absent upstream).
ALLOWED_MISSING = {
    "swin-microsoft": ("semantic_layer", "norm0", "norm1", "norm2"),
    "swin-timm": ("semantic_layer", "norm0", "norm1", "norm2"),
    "semask": (),
    "mit": ("semantic_layer",),
    "semask-fpn": (),
}


def write_checkpoint(state: Mapping[str, torch.Tensor], path: Path, prefix: str) -> None:
    """Write ``state`` with ``prefix`` as a Detectron2 ``.pkl``, ``.safetensors`` or a torch
    ``{"model": ...}``, atomically."""
    state = convert.add_prefix(dict(state), prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_safetensors(state, path)
        return
    with atomic_path(path) as tmp:
        if path.suffix == ".pkl":
            model = {k: v.detach().cpu().numpy() for k, v in state.items()}
            with tmp.open("wb") as f:
                data = {"model": model, "__author__": "semask", "matching_heuristics": False}
                pickle.dump(data, f)
        else:
            torch.save({"model": state}, tmp)


def check_against_config(
    state: Mapping[str, torch.Tensor], config: Path, opts: Sequence[str], source: str
) -> None:
    """Build the backbone of ``config`` (the model, for whole-model sources) and load ``state``
    into it, reporting missing keys."""
    cfg = get_cfg()
    add_semask_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(opts)
    if source in WHOLE_MODEL:
        cfg.MODEL.DEVICE = "cpu"
        convert_semask_fpn_mmseg(state, build_model(cfg))
        sys.stdout.write(f"fits the {cfg.MODEL.META_ARCHITECTURE} model of {config} exactly\n")
        return
    backbone = build_backbone(cfg)
    missing, _ = convert.load_backbone_state_dict(backbone, state, ALLOWED_MISSING[source])
    sys.stdout.write(f"loads into {cfg.MODEL.BACKBONE.NAME}; {len(missing)} keys left at init")
    sys.stdout.write(":\n  " + "\n  ".join(missing) + "\n" if missing else "\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", choices=sorted(CONVERTERS))
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument(
        "--prefix",
        help="name prefix of the output entries (default: backbone., none for whole models)",
    )
    parser.add_argument("--config", type=Path, help="check the result against this config")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="unpickle the input fully; only for files you trust (it runs code the file carries)",
    )
    parser.add_argument("--opts", nargs="+", default=[], help="KEY VALUE overrides for --config")
    args = parser.parse_args(argv)
    if args.output.suffix.lower() not in SUFFIXES:
        parser.error(f"output {args.output} must end in one of {', '.join(SUFFIXES)}")
    try:
        checkpoint = load_checkpoint_file(args.input, allow_unsafe_pickle=args.allow_pickle)
    except WeightsError as error:
        raise SystemExit(f"error: {error}") from error
    state = CONVERTERS[args.source](checkpoint)
    if args.config is not None:
        check_against_config(state, args.config, args.opts, args.source)
    prefix = (
        args.prefix
        if args.prefix is not None
        else ("" if args.source in WHOLE_MODEL else "backbone.")
    )
    write_checkpoint(state, args.output, prefix)
    sys.stdout.write(f"wrote {len(state)} entries to {args.output}\n")


if __name__ == "__main__":
    main()
