"""tools/export_model.py: exports with the config's weights, checks parity, refuses bad options."""

import sys

import pytest
import torch
from conftest import REPO_ROOT
from test_export import FAMILIES, tiny_model, tiny_opts

sys.path.insert(0, str(REPO_ROOT / "tools"))
import export_model  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Perturbed weights of the tiny MiT Semantic-FPN, as a .pth the safe loader reads."""
    path = tmp_path_factory.mktemp("weights") / "model.pth"
    torch.save(tiny_model("fpn_mit").state_dict(), path)
    return path


def run(tmp_path, weights, fmt, suffix, *extra):
    config = str(REPO_ROOT / "configs" / FAMILIES["fpn_mit"][0])
    output = tmp_path / f"model{suffix}"
    argv = ["--config-file", config, "--format", fmt, "--height", "64", "--width", "96"]
    argv += ["--output", str(output), *extra, *tiny_opts("fpn_mit"), "MODEL.WEIGHTS", str(weights)]
    return output, export_model.main(argv)


@pytest.mark.parametrize(
    "fmt, suffix", [pytest.param("onnx", ".onnx", marks=pytest.mark.slow), ("torch_export", ".pt2")]
)
def test_export_writes_a_file_that_matches_eager(tmp_path, weights, fmt, suffix):
    output, results = run(tmp_path, weights, fmt, suffix, "--benchmark", "1")
    assert output.is_file() and results["size_mb"] > 0
    assert results["relative_error"] < 1e-4
    assert results["eager_ms"] > 0 and results["exported_ms"] > 0


def test_weights_are_loaded_strictly(tmp_path, weights):
    partial = tmp_path / "partial.pth"
    state = torch.load(weights, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("sem_seg_head")}, partial)
    with pytest.raises(Exception, match="partial.pth"):
        run(tmp_path, partial, "onnx", ".onnx")


def test_output_suffix_must_match_the_format(tmp_path, weights, capsys):
    with pytest.raises(SystemExit):
        run(tmp_path, weights, "onnx", ".pt2")
    assert "--format onnx writes a .onnx file" in capsys.readouterr().err
