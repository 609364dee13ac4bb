#!/usr/bin/env python
"""Make the SeMask-FPN reference fixtures (tests/fixtures/semantic_fpn/) with the fork's own code.

Needs the SeMask-FPN tree of Picsart-AI-Research/SeMask-Segmentation at commit
16539be7df1e33a469da508091156e791e90ca2d (its folder ``SeMask-FPN``) and a Python 3.11 venv with
torch 2.14.1, mmcv 1.3.0 built without ops (``MMCV_WITH_OPS=0``), timm, matplotlib,
terminaltables; NOT this project's venv. Run it from that venv:

    python tools/reference_fixtures/semask_fpn.py /path/to/SeMask-FPN tests/fixtures/semantic_fpn

Only stand-in: ``torch.nn.SyncBatchNorm._specify_ddp_gpu_num`` (removed from torch, called by
mmcv 1.3.0 when it builds SyncBN) is a no-op; in eval SyncBN applies its running statistics.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import torch
from torch import nn

COMMIT = "16539be7df1e33a469da508091156e791e90ca2d"
IMAGE_SIZE = (65, 99)  # odd: patch, window and patch-merging padding and FPN resizes all occur
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
# The micro models: stage widths 8..64, head dims 8-16, two blocks per stage (plain, shifted);
# semantic windows of 3 so that the windowed stage-2/3 maps span several windows.
MICRO_BACKBONE = dict(
    embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 4], window_size=7, sem_window_size=3
)
# One set of weights (20 classes), run under the fork's two rules.
NUM_CLASSES = 20
MODELS = {
    # Swin T/S/L rule (EMBED_DIM 96/192, > 19 classes): stages 2-3 global.
    "micro_global23": (2, 3),
    # Swin-B (any class count) / 19-class rule: all four stages windowed.
    "micro_windowed": (),
}


def fork_config(fork: Path, num_classes: int, **backbone):
    from mmcv import Config

    cfg = Config.fromfile(str(fork / "configs/_base_/models/semfpn_semask_swin.py"))
    cfg.model.backbone.update(num_cls=num_classes, drop_path_rate=0.0, **backbone)
    dims = [backbone.get("embed_dim", 96) * 2**i for i in range(4)]
    cfg.model.decode_head.update(in_channels=dims, num_classes=num_classes)
    return cfg


def build(fork: Path, num_classes: int, channels: int = 256, **backbone) -> nn.Module:
    from mmseg.models import build_segmentor

    cfg = fork_config(fork, num_classes, **backbone)
    cfg.model.decode_head.channels = channels
    model = build_segmentor(cfg.model, train_cfg=None, test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    return model.eval()


def semantic_layer_kinds(model: nn.Module) -> List[str]:
    return [type(layer.semantic_layer).__name__ for layer in model.backbone.layers]


def published_rule_facts(fork: Path) -> Dict[str, object]:
    """The fork's own choice of windowed/global semantic layers for the published sizes, and
    the parameter count and state_dict layout of Swin-T with 150 classes."""
    sizes = {
        "T": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
        "B": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12),
    }
    facts: Dict[str, object] = {}
    for size, num_classes in (("T", 150), ("T", 19), ("B", 150)):
        torch.manual_seed(0)
        model = build(fork, num_classes, **sizes[size])
        facts[f"{size}_{num_classes}_semantic_layers"] = semantic_layer_kinds(model)
        if (size, num_classes) == ("T", 150):
            facts["T_150_parameters"] = sum(p.numel() for p in model.parameters())
            facts["T_150_keys"] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    return facts


def use_global_semantic_layers(model: nn.Module, stages) -> None:
    """Give ``stages`` the fork's global ``SeMaskBlock`` (what it builds for Swin T/S/L with more
    than 19 classes; at the micro width 8 the fork's own rule picks windows everywhere)."""
    from mmseg.models.backbones.semask_swin_transformer import SeMaskBlock

    for i in stages:
        old = model.backbone.layers[i].semantic_layer
        new = SeMaskBlock(dim=old.dim, n_cls=old.n_cls, window_size=old.window_size)
        new.load_state_dict(old.state_dict())
        model.backbone.layers[i].semantic_layer = new.eval()


def perturb(model: nn.Module) -> None:
    """Move what the initialisation leaves trivial: semantic gamma and mlp_res, LayerNorms and
    BatchNorms (affine and running statistics), from one seeded generator in module order."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__ == "SemanticAttention":
                m.gamma.copy_(0.5 + torch.rand(m.gamma.shape, generator=g))
                m.mlp_res.weight.copy_(0.05 * torch.randn(m.mlp_res.weight.shape, generator=g))
                m.mlp_res.bias.copy_(0.05 * torch.randn(m.mlp_res.bias.shape, generator=g))
            elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                    m.num_batches_tracked.fill_(1000)


def make(fork: Path, out: Path, image: torch.Tensor, name: str, global_stages) -> Dict[str, object]:
    num_classes = NUM_CLASSES
    torch.manual_seed(0)
    model = build(fork, num_classes, channels=16, **MICRO_BACKBONE)
    use_global_semantic_layers(model, global_stages)
    perturb(model)
    x = (image.float() - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    x = x[None]
    with torch.no_grad():
        features, priors = model.backbone(x)
        head_logits = model.decode_head((features, priors))[0]
        logits = model.encode_decode(x, [{}])
    outputs = {"head_logits": head_logits, "logits": logits}
    for i in range(4):
        outputs[f"features.res{i + 2}"] = features[i]
        outputs[f"priors.res{i + 2}"] = priors[i]
    outputs["meta"] = {
        "source": f"Picsart-AI-Research/SeMask-Segmentation@{COMMIT} SeMask-FPN",
        "semantic_layers": semantic_layer_kinds(model),
        "num_classes": num_classes,
        "image_size": list(IMAGE_SIZE),
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = out / "micro.pth"
    if weights.exists():  # the two models share their weights
        saved = torch.load(weights)["state_dict"]
        assert saved.keys() == state.keys() and all(saved[k].equal(v) for k, v in state.items())
    torch.save(
        {
            "meta": {"mmcv_version": "1.3.0", "CLASSES": list(range(num_classes))},
            "state_dict": state,
        },
        weights,
    )
    torch.save(outputs, out / f"{name}_outputs.pt")
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "entries": len(state),
        **outputs["meta"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fork", type=Path, help="the SeMask-FPN folder of the fork")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.fork))
    nn.SyncBatchNorm._specify_ddp_gpu_num = lambda self, gpu_size: None
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    image = torch.randint(
        0, 256, (3, *IMAGE_SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    torch.save(image, args.out / "input_65x99.pt")
    summary = {name: make(args.fork, args.out, image, name, spec) for name, spec in MODELS.items()}
    summary["published"] = published_rule_facts(args.fork)
    (args.out / "fork_facts.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
