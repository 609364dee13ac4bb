"""Non-finite numbers stop training with a message naming what and when: the matcher never hands
NaN/inf to scipy, and a non-finite loss term stops the step before the optimizer updates weights."""

import pytest
import torch
from conftest import REPO_ROOT
from detectron2.utils.events import EventStorage
from test_train_e2e import tiny_opts
from torch import nn

import semask.modeling.matcher as matcher_module
from semask.data.quickstart import generate
from semask.engine import FiniteSimpleTrainer, MixedPrecisionTrainer, Trainer, build_cfg
from semask.modeling.criterion import SetCriterion
from semask.modeling.matcher import HungarianMatcher

CONFIG = REPO_ROOT / "configs" / "quickstart" / "semask_swin_mask2former_quickstart.yaml"


def _outputs(num_queries=4, num_classes=3, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "pred_logits": torch.randn(2, num_queries, num_classes + 1, generator=generator),
        "pred_masks": torch.randn(2, num_queries, size, size, generator=generator),
    }


def _targets(size=8):
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, : size // 2] = True
    masks[1, size // 2 :] = True
    return [{"labels": torch.tensor([0, 2]), "masks": masks}] * 2


@pytest.fixture
def scipy_calls(monkeypatch):
    calls = []
    solver = matcher_module.linear_sum_assignment

    def recording_solver(cost):
        calls.append(cost)
        return solver(cost)

    monkeypatch.setattr(matcher_module, "linear_sum_assignment", recording_solver)
    return calls


@pytest.mark.parametrize("mask_loss", ["sigmoid_ce", "focal"])
def test_matcher_refuses_nan_logits_without_calling_scipy(scipy_calls, mask_loss):
    outputs = _outputs()
    outputs["pred_logits"][0, 1, 2] = float("nan")
    with pytest.raises(FloatingPointError) as error:
        HungarianMatcher(num_points=16, mask_loss=mask_loss)(outputs, _targets())
    assert str(error.value).startswith("HungarianMatcher: non-finite pred_logits in image 0;")
    assert scipy_calls == []


def test_matcher_names_masks_layer_and_iteration(scipy_calls):
    outputs = _outputs()
    outputs["pred_masks"][1, 0, 3, 3] = float("inf")
    with EventStorage(start_iter=41), pytest.raises(FloatingPointError) as error:
        HungarianMatcher(num_points=64)(outputs, _targets(), layer="aux_outputs[2]")
    assert "non-finite pred_masks in image 1 of aux_outputs[2] at iteration 41" in str(error.value)
    assert len(scipy_calls) == 1  # image 0 was finite and matched


def test_matcher_still_matches_finite_predictions(scipy_calls):
    indices = HungarianMatcher(num_points=16)(_outputs(), _targets())
    assert [len(rows) for rows, _ in indices] == [2, 2]
    assert len(scipy_calls) == 2


def test_criterion_names_the_decoder_layer(scipy_calls):
    outputs = _outputs()
    aux = [_outputs(seed=1), _outputs(seed=2)]
    aux[1]["pred_logits"][0] = float("nan")
    criterion = SetCriterion(
        num_classes=3,
        matcher=HungarianMatcher(num_points=16),
        weight_dict={
            f"{k}{s}": 1.0 for k in ("loss_ce", "loss_mask", "loss_dice") for s in ("", "_0", "_1")
        },
        eos_coef=0.1,
        num_points=16,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )
    with pytest.raises(FloatingPointError, match=r"pred_logits in image 0 of aux_outputs\[1\]"):
        criterion({**outputs, "aux_outputs": aux}, _targets())


class TwoLosses(nn.Module):
    """A model whose ``loss_bad`` term is NaN (or inf) while ``loss_good`` is finite."""

    def __init__(self, bad_value: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.bad_value = bad_value

    def forward(self, batch):
        good = (batch @ self.weight).pow(2).mean()
        return {"loss_good": good, "loss_bad": good * 0 + self.bad_value}


def _step(trainer_class, bad_value, **kwargs):
    model = TwoLosses(bad_value)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = trainer_class(model, [torch.ones(3, 2)] * 2, optimizer, **kwargs)
    with EventStorage(start_iter=12) as storage:
        trainer.iter = 12
        with pytest.raises(FloatingPointError) as error:
            trainer.run_step()
    return model, storage, str(error.value)


@pytest.mark.parametrize(
    "trainer_class, kwargs",
    [
        (FiniteSimpleTrainer, {}),
        (MixedPrecisionTrainer, {"dtype": torch.bfloat16, "device_type": "cpu"}),
    ],
)
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_loss_term_stops_the_step_before_the_update(trainer_class, kwargs, bad_value):
    model, storage, text = _step(trainer_class, bad_value, **kwargs)
    assert text.startswith(f"non-finite loss term at iteration 12: loss_bad = {bad_value}")
    assert "loss_good" not in text
    assert torch.equal(model.weight.detach(), torch.ones(2))
    assert "total_loss" not in storage.histories()


def test_trainer_uses_the_checking_step(tmp_path):
    trainer = Trainer(_cfg(tmp_path, max_iter=1, base_lr=0.001))
    assert isinstance(trainer._trainer, FiniteSimpleTrainer)


def _cfg(root, max_iter, base_lr):
    """The tiny end-to-end run of test_train_e2e with ``base_lr`` and no checkpoints."""
    if not (root / "data").exists():
        generate(root / "data", num_train=4, num_val=1, size=64, seed=3)
    opts = tiny_opts(root / "data", root / "out", max_iter)
    opts += ["SOLVER.BASE_LR", str(base_lr), "SOLVER.CHECKPOINT_PERIOD", "1000"]
    return build_cfg(str(CONFIG), opts)


@pytest.mark.slow
def test_diverging_run_stops_with_a_named_non_finite_value(tmp_path):
    trainer = Trainer(_cfg(tmp_path, max_iter=20, base_lr=1e6))
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError) as error:
        trainer.train()
    text = str(error.value)
    assert "invalid numeric entries" not in text
    assert text.startswith(("non-finite loss term at iteration", "HungarianMatcher: non-finite"))
    assert f"at iteration {trainer.iter}" in text and trainer.iter < 19
