"""One training step of SeMaskMaskFormer against the official code's (``*_train_step.pt`` in
``tests/fixtures/mask2former``): every loss term and every parameter's gradient.

Both runs: the same weights and two samples of different sizes (with the targets the mapper
gives: ``instances`` of each label map, classes ascending, bool masks), dropout and drop-path 0, and
``torch.rand`` replaced by a function of the requested shape, so that the matcher's and the mask
losses' point sampling draw the same points whatever the order of the calls.
"""

import sys
from typing import Dict, Tuple

import pytest
import torch
from conftest import REPO_ROOT, semask_cfg
from detectron2.modeling import build_model
from torch import nn

from semask.data.targets import semantic_instances

sys.path.insert(0, str(REPO_ROOT / "tools" / "reference_fixtures"))
from shape_seeded_rand import patch_torch_rand, shape_seeded_rand  # noqa: E402

MODELS = ["micro_msdeform", "micro_msfapn"]
TOLERANCE = 1e-4
# Gradients that are zero in exact arithmetic (the fixture lists them) must stay at rounding noise.
ZERO_GRAD_FRACTION = 1e-6


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def training_step(reference_dir, name: str) -> Tuple[Dict[str, torch.Tensor], nn.Module]:
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / f"{name}_config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    model.load_state_dict(torch.load(reference_dir / f"{name}.pth"), strict=True)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    samples = torch.load(reference_dir / "train_samples.pt")
    inputs = [{**x, "instances": semantic_instances(x["sem_seg"])} for x in samples]
    with patch_torch_rand():
        losses = model(inputs)
    sum(losses.values()).backward()
    return {k: v.detach() for k, v in losses.items()}, model


@pytest.fixture(scope="module", params=MODELS)
def step(request, reference_dir):
    losses, model = training_step(reference_dir, request.param)
    return losses, model, torch.load(reference_dir / f"{request.param}_train_step.pt")


def test_every_loss_term_equals_the_official(step):
    losses, _, expected = step
    assert sorted(losses) == sorted(expected["losses"])
    assert len(losses) == 4 * 3 + 1  # ce, mask, dice per layer (3 aux + final), loss_cate
    errors = {k: abs(losses[k] - v).item() / abs(v).item() for k, v in expected["losses"].items()}
    assert max(errors.values()) <= TOLERANCE, errors


def test_every_parameter_gradient_equals_the_official(step):
    _, model, expected = step
    params = dict(model.named_parameters(remove_duplicate=False))
    with_grad = {id(p) for p in model.parameters() if p.grad is not None}
    assert len(with_grad) == sum(1 for _ in model.parameters())  # every parameter is trained
    assert len(expected["grads"]) == len(with_grad)
    zero = set(expected["meta"]["zero_in_exact_arithmetic"])
    floor = ZERO_GRAD_FRACTION * expected["meta"]["grad_norm"]
    bad = {}
    for name, reference in expected["grads"].items():
        grad = params[name].grad
        error = grad.norm().item() if name in zero else rel_err(grad, reference)
        if error > (floor if name in zero else TOLERANCE):
            bad[name] = error
    assert not bad, bad
    assert len(zero) < len(expected["grads"]) // 10


def test_shape_seeded_rand_depends_only_on_the_shape():
    first = shape_seeded_rand(2, 5, 2)
    assert torch.equal(first, shape_seeded_rand((2, 5, 2)))
    assert torch.equal(first, shape_seeded_rand(torch.Size([2, 5, 2])))
    assert not torch.equal(first[:1], shape_seeded_rand(1, 5, 2))
    assert 0.0 <= first.min() and first.max() < 1.0
    assert shape_seeded_rand(3, dtype=torch.float64).dtype == torch.float64
    original = torch.rand
    with patch_torch_rand():
        torch.rand(4)  # draws from no global generator
        assert torch.equal(torch.rand(2, 5, 2), first)
    assert torch.rand is original
    with pytest.raises(ValueError, match="'generator' and 'out'"):
        shape_seeded_rand(3, generator=torch.Generator())
