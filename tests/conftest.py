"""Shared test fixtures: the official reference fixtures (in ``tests/fixtures``) and a SeMask-aware
config factory."""

from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode, get_cfg

from semask import add_semask_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Test models are tiny: one thread avoids thread-synchronisation overhead on small CPUs."""
    torch.set_num_threads(1)


MASK2FORMER_FIXTURES = (
    "input_75x101.pt",
    "train_samples.pt",
    *(
        f"{model}{suffix}"
        for model in ("micro_msdeform", "micro_msfapn")
        for suffix in (".pth", "_config.yaml", "_keys.json", "_outputs.pt", "_train_step.pt")
    ),
)


def find_reference_dir() -> Path:
    """The official SeMask-Mask2Former fixtures, in the repository (``tests/fixtures/mask2former``).
    A missing file fails the test that asks for them: they are part of the suite, never skipped."""
    directory = FIXTURES_DIR / "mask2former"
    missing = [name for name in MASK2FORMER_FIXTURES if not (directory / name).is_file()]
    if missing:
        pytest.fail(f"reference fixtures missing from {directory}: {missing} (see its README.md)")
    return directory


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return find_reference_dir()


def semask_cfg() -> CfgNode:
    """A detectron2 default config with every SeMask key added."""
    cfg = get_cfg()
    add_semask_config(cfg)
    return cfg
