"""Tiny SeMask models train on the CPU: finite, decreasing losses, every parameter gets gradient."""

import pytest
import torch
from conftest import semask_cfg
from detectron2.modeling import build_model

from semask.data.targets import semantic_instances

K = 4


def tiny_cfg(variant: str):
    """``variant``: "mask2former", "maskformer" (focal mask loss, res5 decoder) or "fpn"."""
    meta_arch = "SeMaskFPN" if variant == "fpn" else "SeMaskMaskFormer"
    cfg = semask_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = meta_arch
    cfg.MODEL.BACKBONE.NAME = "D2SeMaskSwinTransformer"
    cfg.MODEL.SWIN.EMBED_DIM = 16
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 2, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 1, 2, 2]
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.0
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NUM_CLASSES = K
    head.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    head.CONVS_DIM = 32
    head.MASK_DIM = 32
    head.NORM = "GN"
    if meta_arch == "SeMaskFPN":
        head.NAME = "SeMaskFPNHead"
        return cfg
    head.NAME = "BranchMaskFormerHead"
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    head.TRANSFORMER_ENC_LAYERS = 1
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    mf.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"
    mf.HIDDEN_DIM = 32
    mf.NHEADS = 4
    mf.DIM_FEEDFORWARD = 64
    mf.NUM_OBJECT_QUERIES = 8
    mf.DEC_LAYERS = 4
    mf.DROPOUT = 0.0
    mf.CLASS_WEIGHT, mf.MASK_WEIGHT, mf.DICE_WEIGHT = 2.0, 5.0, 5.0
    mf.TRAIN_NUM_POINTS = 256
    if variant == "maskformer":
        head.PIXEL_DECODER_NAME = "BasePixelDecoder"
        head.TRANSFORMER_ENC_LAYERS = 0
        mf.TRANSFORMER_DECODER_NAME = "StandardTransformerDecoder"
        mf.TRANSFORMER_IN_FEATURE = "res5"
        mf.DEC_LAYERS = 3
        mf.MASK_LOSS = "focal"
        mf.CLASS_WEIGHT, mf.MASK_WEIGHT, mf.DICE_WEIGHT = 1.0, 20.0, 1.0
    return cfg


def _batch():
    g = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(2):
        image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g)
        sem_seg = torch.zeros(64, 64, dtype=torch.int64)
        sem_seg[:, 32:] = 1
        sem_seg[40:] = 2 + (image[0, 40:] > 127).long()
        sem_seg[:4] = 255
        batch.append({"image": image, "sem_seg": sem_seg, "instances": semantic_instances(sem_seg)})
    return batch


@pytest.mark.parametrize("variant", ["mask2former", "maskformer", "fpn"])
def test_tiny_training(variant):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(variant)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    batch = _batch()
    grad_seen = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    totals = []
    for _ in range(20):
        losses = model(batch)
        assert "loss_cate" in losses
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{name} gets no gradient"
            grad_seen[name] += p.grad.abs()
        optimizer.step()
        totals.append(total.item())
    assert sum(totals[-3:]) / 3 < 0.85 * sum(totals[:3]) / 3, totals
    assert [n for n, g in grad_seen.items() if not g.any()] == []
