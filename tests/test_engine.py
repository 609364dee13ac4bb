"""Engine pieces: parameter groups, clipping, mixed precision, TTA, config and evaluators."""

import argparse
import copy
import io

import cv2
import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.data import MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from torch import nn

import semask.data  # noqa: F401  (registers the data sets)
from semask.data.builtin import register_sem_seg
from semask.data.quickstart import QUICKSTART_CLASSES, QUICKSTART_COLORS, generate
from semask.engine import (
    MixedPrecisionTrainer,
    Trainer,
    amp_dtype,
    build_cfg,
    build_optimizer,
    build_param_groups,
    with_full_model_clipping,
)
from semask.engine.optim import fused_adamw_available
from semask.evaluation import CityscapesSemSegEvaluator

QUICKSTART_CONFIG = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(3, 1))


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Block()
        self.query_embed = nn.Embedding(2, 4)
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _groups_by_param(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g["params"][0])]: (g["lr"], g["weight_decay"]) for g in groups}


def test_param_groups_follow_the_official_recipe():
    model = Toy()
    groups = build_param_groups(
        model,
        base_lr=1.0,
        weight_decay=0.05,
        weight_decay_norm=0.0,
        weight_decay_embed=0.01,
        backbone_multiplier=0.1,
    )
    got = _groups_by_param(model, groups)
    assert got == {
        "backbone.proj.weight": (0.1, 0.05),
        "backbone.proj.bias": (0.1, 0.05),
        "backbone.norm.weight": (0.1, 0.0),
        "backbone.norm.bias": (0.1, 0.0),
        "backbone.relative_position_bias_table": (0.1, 0.0),
        "query_embed.weight": (1.0, 0.01),
        "head.weight": (1.0, 0.05),
        "head.bias": (1.0, 0.05),
    }


def test_shared_parameters_are_grouped_once():
    model = Toy()
    model.head.weight = model.backbone.proj.weight
    groups = build_param_groups(
        model,
        base_lr=1.0,
        weight_decay=0.0,
        weight_decay_norm=0.0,
        weight_decay_embed=0.0,
        backbone_multiplier=1.0,
    )
    params = [g["params"][0] for g in groups]
    assert len(params) == len({id(p) for p in params}) == 7


def test_full_model_clipping_bounds_the_total_norm():
    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))]
    params[0].grad = torch.full((3,), 3.0)
    params[1].grad = torch.full((4,), 4.0)
    optimizer = with_full_model_clipping(torch.optim.SGD, 0.5)(params, lr=1.0)
    optimizer.step()
    step = torch.cat([-p.detach() for p in params])
    assert torch.linalg.vector_norm(step).item() == pytest.approx(0.5, rel=1e-5)
    # Clipping is joint: the ratio between the two gradients is kept.
    assert (step[0] / step[3]).item() == pytest.approx(3.0 / 4.0, rel=1e-5)
    with pytest.raises(ValueError, match="CLIP_VALUE"):
        with_full_model_clipping(torch.optim.SGD, 0.0)


def test_build_optimizer_from_config():
    cfg = semask_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
    optimizer = build_optimizer(cfg, Toy())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert type(optimizer).__name__ == "AdamWWithFullModelClipping"
    cfg.SOLVER.OPTIMIZER = "LAMB"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg, Toy())


def _adamw_cfg():
    cfg = semask_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.BACKBONE_MULTIPLIER = 0.01, 0.05, 0.1
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False
    return cfg


def _train(model, optimizer, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for param in model.parameters():
            if param.requires_grad:
                param.grad = torch.randn(param.shape, generator=gen)
        optimizer.step()


def _reference_adamw(model, cfg):
    """The per-tensor AdamW loop over the same groups."""
    groups = build_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
    )
    return torch.optim.AdamW(groups, lr=cfg.SOLVER.BASE_LR, foreach=False)


def _assert_same_parameters(model, other):
    for (name, mine), theirs in zip(model.named_parameters(), other.parameters()):
        assert torch.allclose(mine, theirs, rtol=1e-6, atol=1e-7), name


@pytest.mark.skipif(
    not fused_adamw_available([{"params": [nn.Parameter(torch.zeros(1))]}]),
    reason="this PyTorch has no fused AdamW for the CPU",
)
def test_fused_adamw_steps_like_the_per_tensor_loop_and_stays_fused_when_resumed():
    torch.manual_seed(0)
    cfg, model = _adamw_cfg(), Toy()
    reference_model = copy.deepcopy(model)
    optimizer, reference = build_optimizer(cfg, model), _reference_adamw(reference_model, cfg)
    assert all(group["fused"] for group in optimizer.param_groups)
    _train(model, optimizer, 3, seed=1)
    _train(reference_model, reference, 3, seed=1)
    _assert_same_parameters(model, reference_model)
    # a checkpoint of the per-tensor loop (fused=None, CPU step counts) resumed by the fused one
    resumed = build_optimizer(cfg, model)
    saved = io.BytesIO()
    torch.save(reference.state_dict(), saved)
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved))
    assert all(group["fused"] and group["foreach"] is None for group in resumed.param_groups)
    steps = [state["step"] for state in resumed.state.values()]
    assert all(step.dtype == torch.float32 and float(step) == 3.0 for step in steps)
    _train(model, resumed, 2, seed=2)
    _train(reference_model, reference, 2, seed=2)
    _assert_same_parameters(model, reference_model)


def test_fused_adamw_availability_follows_the_parameters(monkeypatch):
    cpu = nn.Parameter(torch.zeros(1))
    assert not fused_adamw_available([])
    assert not fused_adamw_available(
        [{"params": [cpu, nn.Parameter(torch.zeros(1, device="meta"))]}]
    )

    def without_fused_kernel(params, fused=None, **kwargs):  # as PyTorch < 2.4 on the CPU
        raise RuntimeError("`fused=True` requires all the params to be CUDA, floating point Tensor")

    monkeypatch.setattr(torch.optim, "AdamW", without_fused_kernel)
    assert not fused_adamw_available([{"params": [cpu]}])


def test_amp_dtype():
    cfg = semask_cfg()
    cfg.MODEL.DEVICE = "cpu"
    assert amp_dtype(cfg) is None
    cfg.SOLVER.AMP.ENABLED = True
    assert amp_dtype(cfg) is None  # float16 needs CUDA
    cfg.SOLVER.AMP.PRECISION = "bfloat16"
    assert amp_dtype(cfg) is torch.bfloat16
    cfg.MODEL.DEVICE = "cuda"
    cfg.SOLVER.AMP.PRECISION = "float16"
    assert amp_dtype(cfg) is torch.float16
    cfg.SOLVER.AMP.PRECISION = "float8"
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION"):
        amp_dtype(cfg)


class LossModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.seen_dtypes = []

    def forward(self, batch):
        product = batch @ self.weight.unsqueeze(1)
        self.seen_dtypes.append(product.dtype)
        return {"loss": product.float().pow(2).mean()}


def test_mixed_precision_step_runs_in_bfloat16_on_cpu():
    model = LossModel()
    data = [torch.ones(3, 2)] * 2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = MixedPrecisionTrainer(model, data, optimizer, dtype=torch.bfloat16, device_type="cpu")
    from detectron2.utils.events import EventStorage

    with EventStorage():
        trainer.iter = 0
        trainer.run_step()
    assert model.seen_dtypes == [torch.bfloat16]
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight.detach(), torch.ones(2))
    assert trainer.grad_scaler is None and "grad_scaler" not in trainer.state_dict()


class OracleSegmenter(nn.Module):
    """One-hot ground-truth scores, for images seen in order, 4 copies each (flipped every other
    call, as DatasetMapperTTA orders them), so that only a correct flip-back scores 100 mIoU."""

    def __init__(self, label_files):
        super().__init__()
        self.labels = [
            torch.from_numpy(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)) for f in label_files
        ]
        self.calls = 0

    def forward(self, batched_inputs):
        outputs = []
        for _ in batched_inputs:
            labels = self.labels[self.calls // 4]
            if self.calls % 2:
                labels = labels.flip(-1)
            self.calls += 1
            scores = nn.functional.one_hot(labels.long(), 7).permute(2, 0, 1).float()
            outputs.append({"sem_seg": scores})
        return outputs


def test_test_with_tta_evaluates_every_augmentation(tmp_path):
    generate(tmp_path / "data", num_train=1, num_val=2, size=32)
    register_sem_seg(
        "engine_tta_val",
        str(tmp_path / "data/images/validation"),
        str(tmp_path / "data/annotations/validation"),
        QUICKSTART_CLASSES,
        QUICKSTART_COLORS,
    )
    cfg = semask_cfg()
    cfg.DATASETS.TEST = ("engine_tta_val",)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.INPUT.MIN_SIZE_TEST = 32
    cfg.TEST.AUG.MIN_SIZES = (32, 48)
    cfg.TEST.AUG.FLIP = True
    cfg.DATALOADER.NUM_WORKERS = 0
    label_files = sorted((tmp_path / "data/annotations/validation").glob("*.png"))
    model = OracleSegmenter(label_files).eval()
    results = Trainer.test_with_TTA(cfg, model)
    assert list(results) == ["sem_seg_TTA"]
    assert results["sem_seg_TTA"]["mIoU"] == pytest.approx(100.0)
    assert model.calls == 2 * 4
    assert (tmp_path / "out" / "inference_TTA" / "sem_seg_evaluation.pth").is_file()


def test_build_cfg_merges_file_and_overrides():
    cfg = build_cfg(str(QUICKSTART_CONFIG), ["SOLVER.MAX_ITER", "7"])
    assert cfg.is_frozen()
    assert cfg.SOLVER.MAX_ITER == 7
    assert cfg.MODEL.META_ARCHITECTURE == "SeMaskMaskFormer"
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == len(
        MetadataCatalog.get("quickstart_sem_seg_train").stuff_classes
    )
    if not torch.cuda.is_available():
        assert cfg.MODEL.DEVICE == "cpu"


def test_setup_cfg_writes_config(tmp_path):
    from semask.engine import setup_cfg

    args = argparse.Namespace(
        config_file=str(QUICKSTART_CONFIG), opts=["OUTPUT_DIR", str(tmp_path)]
    )
    cfg = setup_cfg(args)
    assert (tmp_path / "config.yaml").read_text() == cfg.dump()


def test_evaluators_by_type(tmp_path):
    generate(tmp_path / "data", num_train=1, num_val=1, size=32)
    register_sem_seg(
        "engine_evaluator_val",
        str(tmp_path / "data/images/validation"),
        str(tmp_path / "data/annotations/validation"),
        QUICKSTART_CLASSES,
        QUICKSTART_COLORS,
    )
    cfg = semask_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = Trainer.build_evaluator(cfg, "engine_evaluator_val")
    assert isinstance(evaluator._evaluators[0], SemSegEvaluator)
    evaluator = Trainer.build_evaluator(cfg, "cityscapes_fine_sem_seg_val")
    assert isinstance(evaluator._evaluators[0], CityscapesSemSegEvaluator)
    with pytest.raises(ValueError, match="coco_2017_val"):
        Trainer.build_evaluator(cfg, "coco_2017_val")
