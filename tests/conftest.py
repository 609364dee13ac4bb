"""Shared test fixtures: the official reference fixtures and a SeMask-aware config factory."""

import os
from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode, get_cfg

import semask  # noqa: F401  (applies semask.compat before detectron2 is used)
from semask import add_semask_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Test models are tiny: one thread avoids thread-synchronisation overhead on small CPUs."""
    torch.set_num_threads(1)


def find_reference_dir() -> Path:
    """The official fixtures: $SEMASK_REFERENCE_DIR, else shared/reference beside the repository
    (or beside one of its parent folders)."""
    candidates = [os.environ.get("SEMASK_REFERENCE_DIR")]
    candidates += [parent / "shared" / "reference" for parent in REPO_ROOT.parents]
    for candidate in candidates:
        if candidate and (Path(candidate) / "micro_msdeform.pth").is_file():
            return Path(candidate)
    message = "official reference fixtures not found (set SEMASK_REFERENCE_DIR)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return find_reference_dir()


def semask_cfg() -> CfgNode:
    """A detectron2 default config with every SeMask key added."""
    cfg = get_cfg()
    add_semask_config(cfg)
    return cfg
