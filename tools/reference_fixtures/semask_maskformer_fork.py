"""Make tests/fixtures/maskformer/: reference outputs of the published SeMask-MaskFormer code.

Needs (outside this repository): the SeMask-MaskFormer tree of
Picsart-AI-Research/SeMask-Segmentation at commit 16539be7df1e33a469da508091156e791e90ca2d, passed
as ``--fork``; the detectron2 0.6 that ``tools/install_detectron2.py`` installs (pure Python,
patched for current numpy / Pillow, with a stand-in for its compiled ops, which the fork does not
call), fvcore, timm, scipy, opencv and, on PYTHONPATH, einops and icecream (the fork imports them).
This project must NOT be importable as ``semask`` in that process (both register
``SeMaskMaskFormer`` and ``BranchMaskFormerHead``), so run it without the project on PYTHONPATH:

    PYTHONPATH=<site with einops, icecream> \
        python tools/reference_fixtures/semask_maskformer_fork.py \
        --fork <SeMask-Segmentation>/SeMask-MaskFormer --out tests/fixtures/maskformer

It builds a micro SeMask Swin + MaskFormer (BasePixelDecoder, StandardTransformerDecoder on res5)
with the fork's own config code, perturbs its weights (seeded; see ``perturb``), runs one odd-sized
image in eval mode (plain inference and the fork's multi-scale + flip ``SemanticSegmentorWithTTA``)
and writes weights, input, config and outputs (float32) plus ``meta``.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict

import torch

COMMIT = "16539be7df1e33a469da508091156e791e90ca2d"
IMAGE_SIZE = (83, 117)
NUM_CLASSES = 5
TTA_MIN_SIZES = (56, 100)
TTA_MAX_SIZE = 1000
FORK_BASE = "configs/ade20k-150/semask_swin/semask_maskformer_R50_bs16_160k.yaml"

MICRO = {
    "MODEL.SWIN.EMBED_DIM": 8,
    "MODEL.SWIN.DEPTHS": [2, 2, 2, 1],
    "MODEL.SWIN.NUM_HEADS": [1, 2, 4, 8],
    "MODEL.SWIN.WINDOW_SIZE": 7,
    "MODEL.SWIN.SEM_WINDOW_SIZE": 7,
    "MODEL.SWIN.NUM_SEM_BLOCKS": 1,
    "MODEL.SWIN.APE": False,
    "MODEL.SWIN.PATCH_NORM": True,
    "MODEL.SWIN.DROP_PATH_RATE": 0.0,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": NUM_CLASSES,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 32,
    "MODEL.SEM_SEG_HEAD.MASK_DIM": 32,
    "MODEL.MASK_FORMER.HIDDEN_DIM": 32,
    "MODEL.MASK_FORMER.NHEADS": 4,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD": 64,
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 8,
    "MODEL.MASK_FORMER.DEC_LAYERS": 3,
}


def build_cfg(fork: Path):
    """The fork's config of its SeMask MaskFormer file with the micro sizes, frozen."""
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config

    sys.path.insert(0, str(fork))
    from mask_former import add_mask_former_config

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_mask_former_config(cfg)
    cfg.merge_from_file(str(fork / FORK_BASE))
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskSwinTransformer"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TRAIN = ("maskformer_fixture",)
    cfg.DATASETS.TEST = ()
    for key, value in MICRO.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    cfg.TEST.AUG.MIN_SIZES = list(TTA_MIN_SIZES)
    cfg.TEST.AUG.MAX_SIZE = TTA_MAX_SIZE
    cfg.TEST.AUG.FLIP = True
    cfg.OUTPUT_DIR = "./output"
    cfg.freeze()
    return cfg


def perturb(model: torch.nn.Module) -> Dict[str, str]:
    """Overwrite what the fork initialises to an identity or zero, from one seeded generator,
    visiting modules in ``named_modules()`` order."""
    gen = torch.Generator().manual_seed(123)

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(t.shape, generator=gen)

    with torch.no_grad():
        for _, module in model.named_modules():
            if type(module).__name__ == "SemanticAttention":
                module.gamma.copy_(0.5 + torch.rand(module.gamma.shape, generator=gen))
                module.mlp_res.weight.copy_(normal(module.mlp_res.weight, 0.05))
                module.mlp_res.bias.copy_(normal(module.mlp_res.bias, 0.05))
            elif isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                module.weight.copy_(normal(module.weight, 0.1, 1.0))
                module.bias.copy_(normal(module.bias, 0.1))
    return {
        "generator": "torch.Generator().manual_seed(123), modules in named_modules() order",
        "SemanticAttention": "gamma <- 0.5 + U[0, 1); mlp_res.weight, mlp_res.bias <- N(0, 0.05^2)",
        "GroupNorm, LayerNorm": "weight <- 1 + N(0, 0.1^2); bias <- N(0, 0.1^2)",
    }


def _float32(value):
    if isinstance(value, dict):
        return {k: v.float().contiguous() for k, v in value.items()}
    return value.float().contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fork", type=Path, required=True, help="the SeMask-MaskFormer folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = build_cfg(args.fork.resolve())

    from detectron2.modeling import build_model
    from mask_former import SemanticSegmentorWithTTA

    torch.manual_seed(0)
    model = build_model(cfg).eval()
    rules = perturb(model)

    image = torch.randint(
        0, 256, (3, *IMAGE_SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    captured = {}
    model.backbone.register_forward_hook(lambda m, i, out: captured.update(backbone=out))
    model.sem_seg_head.register_forward_hook(lambda m, i, out: captured.update(head=out))
    height, width = IMAGE_SIZE
    with torch.no_grad():
        (result,) = model([{"image": image, "height": height, "width": width}])
    features, priors = captured["backbone"]
    head, _ = captured["head"]
    with torch.no_grad():
        (tta,) = SemanticSegmentorWithTTA(cfg, model)(
            [{"image": image, "height": height, "width": width}]
        )

    outputs = {
        "sem_seg": result["sem_seg"],
        "tta_sem_seg": tta["sem_seg"],
        "pred_logits": head["pred_logits"],
        "pred_masks": head["pred_masks"],
        "aux_pred_logits": torch.stack([a["pred_logits"] for a in head["aux_outputs"]]),
        "aux_pred_masks": torch.stack([a["pred_masks"] for a in head["aux_outputs"]]),
        "features": dict(features),
        "priors": dict(priors),
    }
    outputs = {k: _float32(v) for k, v in outputs.items()}
    outputs["meta"] = {
        "source": f"Picsart-AI-Research/SeMask-Segmentation@{COMMIT} SeMask-MaskFormer",
        "input": "input.pt",
        "tta": {"MIN_SIZES": list(TTA_MIN_SIZES), "MAX_SIZE": TTA_MAX_SIZE, "FLIP": True},
        "perturbation": rules,
        "torch": str(torch.__version__),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(image, args.out / "input.pt")
    torch.save(dict(model.state_dict()), args.out / "weights.pth")
    torch.save(outputs, args.out / "outputs.pt")
    (args.out / "config.yaml").write_text(cfg.dump())


if __name__ == "__main__":
    main()
