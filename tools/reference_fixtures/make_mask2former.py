"""Make ``tests/fixtures/mask2former/``: two micro SeMask-Mask2Former models, published code.

Needs the published code: Picsart-AI-Research/SeMask-Segmentation at commit
16539be7df1e33a469da508091156e791e90ca2d, folder ``SeMask-FAPN/SeMask-Mask2Former`` (``--fork``).
Environment: Python 3.11 with torch, torchvision, the detectron2 0.6 that
``tools/install_detectron2.py`` installs (pure Python, with its ``detectron2._C`` stand-in and
current numpy / Pillow spellings), fvcore, timm, scipy, opencv, einops and icecream. This project's
package is not imported (its registrations would clash with the fork's). Two compiled ops of the
fork are replaced here:
``MSDeformAttnFunction`` by the fork's own ``ms_deform_attn_core_pytorch``, and the DCNv2 ``DCN``
by a module on ``torchvision.ops.deform_conv2d`` with DCNv2's offset / mask layout.

    PYTHONPATH=<dir with einops, icecream> python tools/reference_fixtures/make_mask2former.py \
        --fork <checkout>/SeMask-FAPN/SeMask-Mask2Former --out tests/fixtures/mask2former
"""

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torchvision
from shape_seeded_rand import patch_torch_rand
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = "Picsart-AI-Research/SeMask-Segmentation@16539be7df1e33a469da508091156e791e90ca2d"
NUM_CLASSES = 7
INPUT_SIZE = (75, 101)
INPUT_FILE = "input_75x101.pt"
SECOND_SAMPLE_SIZE = (58, 90)
BASE_CONFIG = "configs/ade20k/semantic-segmentation/semask_swin/{}"
# name: (base config, pixel decoder, deformable encoder layers)
MODELS = {
    "micro_msdeform": ("semask_maskformer2_R50_bs16_160k.yaml", "MSDeformAttnPixelDecoder", 2),
    "micro_msfapn": (
        "semask_maskformer2_msfapn_R50_bs16_160k.yaml",
        "MSDeformAttnPixelFANDecoder",
        1,
    ),
}
OVERRIDES = [
    ("MODEL.BACKBONE.NAME", "D2SeMaskSwinTransformer"),
    ("MODEL.SWIN.EMBED_DIM", 8),
    ("MODEL.SWIN.DEPTHS", [2, 2, 2, 2]),
    ("MODEL.SWIN.NUM_HEADS", [1, 2, 2, 4]),
    ("MODEL.SWIN.MLP_RATIO", 2.0),
    ("MODEL.SWIN.WINDOW_SIZE", 7),
    ("MODEL.SWIN.SEM_WINDOW_SIZE", 7),
    ("MODEL.SWIN.NUM_SEM_BLOCKS", 1),
    ("MODEL.SWIN.APE", False),
    ("MODEL.SWIN.PATCH_NORM", True),
    ("MODEL.SWIN.DROP_PATH_RATE", 0.0),
    ("MODEL.SEM_SEG_HEAD.NUM_CLASSES", NUM_CLASSES),
    ("MODEL.SEM_SEG_HEAD.CONVS_DIM", 32),
    ("MODEL.SEM_SEG_HEAD.MASK_DIM", 32),
    ("MODEL.MASK_FORMER.HIDDEN_DIM", 32),
    ("MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64),
    ("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 8),
    ("MODEL.MASK_FORMER.DEC_LAYERS", 4),
    ("MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256),
]
# A gradient this small beside the whole gradient's norm is rounding noise around an exact zero
# (a bias followed by a per-channel GroupNorm, a key bias under softmax).
ZERO_GRAD_FRACTION = 1e-6
PERTURBATION = [
    "torch.Generator().manual_seed(123) over model.named_modules() (shared modules once):",
    "SemanticAttention: gamma <- 0.5 + U[0, 1); mlp_res.weight, mlp_res.bias <- N(0, 0.05^2)",
    "GroupNorm, LayerNorm: weight <- 1 + N(0, 0.1^2), bias <- N(0, 0.1^2)",
    "DCN: conv_offset_mask.weight <- N(0, 0.01^2)",
    "MSDeformAttn: sampling_offsets.weight <- N(0, 0.01^2)",
]


class DeformConvStandIn(nn.Module):
    """DCNv2's ``DCN`` with ``extra_offset_mask=True``: ``forward([x, guide])``; offsets and mask
    come from ``conv_offset_mask(guide)`` chunked in three (o1, o2, mask), offsets = cat(o1, o2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int = 1,
        deformable_groups: int = 1,
        extra_offset_mask: bool = False,
    ) -> None:
        super().__init__()
        if not extra_offset_mask:
            raise NotImplementedError("the fork uses DCN(extra_offset_mask=True) only")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = 1.0 / (in_channels * kernel_size * kernel_size) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        offsets = deformable_groups * 3 * kernel_size * kernel_size
        self.conv_offset_mask = nn.Conv2d(
            in_channels, offsets, kernel_size, stride, padding, bias=True
        )
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        x, guide = inputs
        first, second, mask = torch.chunk(self.conv_offset_mask(guide), 3, dim=1)
        return torchvision.ops.deform_conv2d(
            x,
            torch.cat((first, second), dim=1),
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=torch.sigmoid(mask),
        )


def import_fork(fork: Path) -> types.ModuleType:
    """Import the fork's ``mask2former`` package with the stand-ins in place."""
    sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
    sys.modules["dcn_v2"] = types.SimpleNamespace(DCN=DeformConvStandIn)
    sys.path.insert(0, str(fork))
    import mask2former
    from mask2former.modeling.pixel_decoder.ops.functions import ms_deform_attn_func
    from mask2former.modeling.pixel_decoder.ops.modules import ms_deform_attn

    def pure_pytorch(value, shapes, level_start_index, locations, weights, im2col_step):
        return ms_deform_attn_func.ms_deform_attn_core_pytorch(value, shapes, locations, weights)

    ms_deform_attn.MSDeformAttnFunction = types.SimpleNamespace(apply=pure_pytorch)
    return mask2former


def build_cfg(fork: Path, mask2former: types.ModuleType, name: str):
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config

    base, decoder, encoder_layers = MODELS[name]
    cfg = get_cfg()
    add_deeplab_config(cfg)
    mask2former.add_maskformer2_config(cfg)
    cfg.merge_from_file(str(fork / BASE_CONFIG.format(base)))
    opts = OVERRIDES + [
        ("MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", decoder),
        ("MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", encoder_layers),
    ]
    cfg.merge_from_list([str(v) if i % 2 else v for kv in opts for i, v in enumerate(kv)])
    cfg.MODEL.DEVICE = "cpu"
    cfg.OUTPUT_DIR = "./output"
    return cfg


def perturb(model: nn.Module) -> None:
    """The rules of ``PERTURBATION``: make every part of the computation show in the outputs."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for module in dict(model.named_modules()).values():
            kind = type(module).__name__
            if kind == "SemanticAttention":
                module.gamma.copy_(0.5 + torch.rand(module.gamma.shape, generator=g))
                module.mlp_res.weight.normal_(0.0, 0.05, generator=g)
                module.mlp_res.bias.normal_(0.0, 0.05, generator=g)
            elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=g))
                module.bias.normal_(0.0, 0.1, generator=g)
            elif kind == "DeformConvStandIn":
                module.conv_offset_mask.weight.normal_(0.0, 0.01, generator=g)
            elif kind == "MSDeformAttn":
                module.sampling_offsets.weight.normal_(0.0, 0.01, generator=g)


def tied_keys(model: nn.Module) -> List[List[str]]:
    names: Dict[int, List[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def label_map(size: Tuple[int, int], classes: range, g: torch.Generator) -> torch.Tensor:
    """[H, W] int64: 12-pixel blocks of random classes, 10% random pixels and the top 4 rows 255."""
    h, w = size
    coarse = torch.randint(classes.start, classes.stop, (h // 12 + 1, w // 12 + 1), generator=g)
    labels = coarse.repeat_interleave(12, 0).repeat_interleave(12, 1)[:h, :w].contiguous()
    labels[torch.rand(size, generator=g) < 0.1] = 255
    labels[:4] = 255
    return labels


def make_samples() -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]]]:
    first = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, *INPUT_SIZE), dtype=torch.uint8, generator=first)
    g = torch.Generator().manual_seed(2)
    second = torch.randint(0, 256, (3, *SECOND_SAMPLE_SIZE), dtype=torch.uint8, generator=g)
    samples = [
        {"image": image, "sem_seg": label_map(INPUT_SIZE, range(0, NUM_CLASSES), g)},
        {"image": second, "sem_seg": label_map(SECOND_SAMPLE_SIZE, range(1, 5), g)},
    ]
    return image, samples


def clone(value):
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    return value.detach().clone().contiguous()


def inference_outputs(model: nn.Module, image: torch.Tensor) -> Dict:
    captured = {}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, out: captured.update(backbone=out)),
        model.sem_seg_head.register_forward_hook(lambda m, i, out: captured.update(head=out)),
        model.backbone.register_forward_pre_hook(lambda m, args: captured.update(x=args[0])),
    ]
    with torch.no_grad():
        (result,) = model([{"image": image, "height": INPUT_SIZE[0], "width": INPUT_SIZE[1]}])
    for hook in hooks:
        hook.remove()
    features, cls_outputs = captured["backbone"]
    predictions, sem_predictions = captured["head"]
    aux = torch.stack([a["pred_logits"] for a in predictions["aux_outputs"]])
    return clone(
        {
            "sem_seg": result["sem_seg"],
            "pred_logits": predictions["pred_logits"],
            "pred_masks": predictions["pred_masks"],
            "aux_pred_logits": aux,
            "features": features,
            "cls_outputs": cls_outputs,
            "sem_head_pred": sem_predictions["pred"],
            "normalized_input": captured["x"],
        }
    )


def fork_training_inputs(samples: List[Dict], padded: Tuple[int, int]) -> List[Dict]:
    """The fork's training dicts: ``instances`` (classes in ascending order, bool masks) and
    ``sem_seg`` padded with 255 to the batch size, as its dataset mapper and model expect."""
    from detectron2.structures import Instances

    inputs = []
    for sample in samples:
        labels = sample["sem_seg"]
        classes = [c for c in labels.unique().tolist() if c != 255]
        instances = Instances(tuple(labels.shape))
        instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
        instances.gt_masks = torch.stack([labels == c for c in classes])
        sem_seg = torch.full(padded, 255, dtype=torch.int64)
        sem_seg[: labels.shape[0], : labels.shape[1]] = labels
        inputs.append({"image": sample["image"], "instances": instances, "sem_seg": sem_seg})
    return inputs


def training_step(model: nn.Module, samples: List[Dict]) -> Dict:
    """One forward + backward of the sum of the weighted losses; no dropout; shape-seeded points."""
    model.train()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    for module in dropouts:
        module.p = 0.0
    stride = 32
    padded = tuple(-(-max(s["image"].shape[d] for s in samples) // stride) * stride for d in (1, 2))
    model.zero_grad(set_to_none=True)
    with patch_torch_rand():
        losses = model(fork_training_inputs(samples, padded))
    total = sum(v.sum() for v in losses.values())
    total.backward()
    # The fork also returns loss_cate_0..2: constant zero tensors [1] (no prior on aux outputs).
    constant = sorted(k for k, v in losses.items() if not v.requires_grad)
    named = dict(model.named_parameters())
    grads = {k: p.grad.clone() for k, p in named.items() if p.grad is not None}
    grad_norm = torch.cat([g.flatten() for g in grads.values()]).norm()
    return {
        "losses": {k: v.detach().reshape(()) for k, v in losses.items() if k not in constant},
        "grads": grads,
        "meta": {
            "total_loss": total.item(),
            "grad_norm": grad_norm.item(),
            "zero_in_exact_arithmetic": sorted(
                k for k, g in grads.items() if g.norm() < ZERO_GRAD_FRACTION * grad_norm
            ),
            "padded_size": list(padded),
            "no_grad_parameters": sorted(k for k, p in named.items() if p.grad is None),
            "constant_fork_losses": constant,
            "dropout_modules_set_to_zero": len(dropouts),
            "points": "torch.rand patched with tools/reference_fixtures/shape_seeded_rand.py",
            "source": SOURCE,
        },
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fork", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests/fixtures/mask2former")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    mask2former = import_fork(args.fork)
    from detectron2.modeling import build_model

    image, samples = make_samples()
    torch.save(image, args.out / INPUT_FILE)
    torch.save(samples, args.out / "train_samples.pt")
    for name in MODELS:
        cfg = build_cfg(args.fork, mask2former, name)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        perturb(model)
        state = model.state_dict()
        torch.save(state, args.out / f"{name}.pth")
        (args.out / f"{name}_config.yaml").write_text(cfg.dump())
        keys = {
            "keys": [[k, list(v.shape), str(v.dtype)[len("torch.") :]] for k, v in state.items()],
            "tied_keys": tied_keys(model),
            "num_parameters": sum(p.numel() for p in model.parameters()),
        }
        (args.out / f"{name}_keys.json").write_text(json.dumps(keys, indent=1) + "\n")
        outputs = inference_outputs(model, image)
        outputs["meta"] = {"source": SOURCE, "perturbation": PERTURBATION, "input": INPUT_FILE}
        torch.save(outputs, args.out / f"{name}_outputs.pt")
        step = training_step(model, samples)
        torch.save(step, args.out / f"{name}_train_step.pt")
        print(name, keys["num_parameters"], "parameters, total loss", step["meta"]["total_loss"])


if __name__ == "__main__":
    main()
