"""Where SeMask restates or stands in for detectron2 code, it follows the installed detectron2:
a change there fails here instead of drifting silently, and the SeMask parts stay in place."""

import ast
import inspect
import textwrap
from typing import Callable, List, Set

import pytest
from detectron2.engine import DefaultPredictor, DefaultTrainer, hooks
from detectron2.engine.defaults import create_ddp_model
from test_predictor import contract_cfg
from test_train_e2e import CONFIG, tiny_opts

from semask.checkpoint import SeMaskCheckpointer
from semask.data.quickstart import generate
from semask.engine import FiniteSimpleTrainer, MixedPrecisionTrainer, Trainer, build_cfg
from semask.engine.trainer import ddp_arguments
from semask.predictor import SeMaskPredictor

# DefaultTrainer.__init__ of detectron2 0.6 (and of its main branch), statement by statement.
DEFAULT_TRAINER_INIT = [
    "super().__init__()",
    "logger = logging.getLogger('detectron2')",
    "if not logger.isEnabledFor(logging.INFO):\n    setup_logger()",
    "cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())",
    "model = self.build_model(cfg)",
    "optimizer = self.build_optimizer(cfg, model)",
    "data_loader = self.build_train_loader(cfg)",
    "model = create_ddp_model(model, broadcast_buffers=False)",
    "self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)"
    "(model, data_loader, optimizer)",
    "self.scheduler = self.build_lr_scheduler(cfg, optimizer)",
    "self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))",
    "self.start_iter = 0",
    "self.max_iter = cfg.SOLVER.MAX_ITER",
    "self.cfg = cfg",
    "self.register_hooks(self.build_hooks())",
]
# What Trainer.__init__ does instead, by statement index: the rest is the same.
TRAINER_CHANGES = {
    0: "TrainerBase.__init__(self)",
    7: "model = create_ddp_model(model, broadcast_buffers=False, **ddp_arguments(cfg))",
    8: "self._trainer = self.build_step_runner(cfg, model, data_loader, optimizer)",
    10: "self.checkpointer = SeMaskCheckpointer(model, cfg.OUTPUT_DIR, "
    "allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE, trainer=weakref.proxy(self))",
}


def statements(function: Callable) -> List[str]:
    """The statements of ``function``'s body as ``ast.unparse`` writes them: no docstring, no
    comments, one formatting."""
    body = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return [ast.unparse(node) for node in body]


def self_attributes(function: Callable) -> Set[str]:
    """The names ``X`` that ``function`` assigns as ``self.X = ...``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }


def test_trainer_init_is_default_trainer_init_with_three_changes():
    assert statements(DefaultTrainer.__init__) == DEFAULT_TRAINER_INIT, (
        "detectron2's DefaultTrainer.__init__ changed: bring Trainer.__init__ "
        "(semask/engine/trainer.py) and this test up to date, or use the new hooks"
    )
    expected = [TRAINER_CHANGES.get(i, line) for i, line in enumerate(DEFAULT_TRAINER_INIT)]
    assert statements(Trainer.__init__) == expected


def test_ddp_arguments_leave_cuda_to_detectron2_and_give_cpu_modules_no_device_ids():
    cfg = contract_cfg()
    assert ddp_arguments(cfg) == {"device_ids": None}
    cfg.MODEL.DEVICE = "cuda:1"
    assert ddp_arguments(cfg) == {}
    assert "device_ids" in inspect.getsource(create_ddp_model)  # the default this overrides


@pytest.mark.parametrize(
    "amp, step_runner", [(False, FiniteSimpleTrainer), (True, MixedPrecisionTrainer)]
)
def test_the_trainer_steps_and_checkpoints_the_semask_way(tmp_path, amp, step_runner):
    data = generate(tmp_path / "data", num_train=2, num_val=1, size=64, seed=3)
    opts = tiny_opts(data, tmp_path / "out", max_iter=1)
    opts += ["SOLVER.AMP.ENABLED", str(amp), "SOLVER.AMP.PRECISION", "bfloat16"]
    trainer = Trainer(build_cfg(str(CONFIG), opts))
    assert type(trainer._trainer) is step_runner
    assert trainer._trainer.model is trainer.model
    assert isinstance(trainer.checkpointer, SeMaskCheckpointer)
    assert trainer.checkpointer.checkpointables["trainer"].iter == trainer.iter  # a proxy of it
    periodic = [h for h in trainer._hooks if isinstance(h, hooks.PeriodicCheckpointer)]
    assert len(periodic) == 1 and periodic[0].checkpointer is trainer.checkpointer


def test_the_predictor_sets_what_default_predictor_sets():
    attributes = self_attributes(DefaultPredictor.__init__)
    changed = "detectron2's DefaultPredictor.__init__ changed: check SeMaskPredictor (predictor.py)"
    assert attributes == {"cfg", "model", "metadata", "aug", "input_format"}, changed
    predictor = SeMaskPredictor(contract_cfg())
    assert all(hasattr(predictor, name) for name in attributes)
    assert predictor.input_format == "RGB" and predictor.aug.short_edge_length == [32, 32]
