"""tools/benchmark.py and tools/analyze_model.py on the quick-start config (tiny sizes, one or two
iterations): the JSON they write, the parameter count, the missing-transformers message."""

import json
import sys

import pytest
import torch
from conftest import REPO_ROOT

from semask.benchmarking import Settings, SubjectSpec, runner, synthetic_samples
from semask.benchmarking.flops import OP_HANDLES, analyze, module_groups
from semask.benchmarking.hf_peer import PeerUnavailableError, require_transformers
from semask.benchmarking.runner import measure_memory
from semask.engine import build_cfg
from semask.predictor import SeMaskPredictor

sys.path.insert(0, str(REPO_ROOT / "tools"))
import analyze_model  # noqa: E402
import benchmark  # noqa: E402

CONFIG = str(REPO_ROOT / "configs/quickstart/semask_swin_mask2former_quickstart.yaml")
# smaller still than the quick-start model, so that a training step takes well under a second
TINY = ["MODEL.MASK_FORMER.DEC_LAYERS", "2", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "64"]


@pytest.mark.slow
def test_benchmark_writes_the_documented_json(tmp_path, capsys):
    output = tmp_path / "bench.json"
    argv = ["--config-file", CONFIG, "--height", "64", "--width", "96", "--batch", "2"]
    argv += ["--threads", "1", "--iters", "2", "--warmup", "1", "--matmul-rate"]
    report = benchmark.main([*argv, "--output", str(output), *TINY])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(report))
    assert written["input"] == {"batch": 2, "height": 64, "width": 96}
    assert set(written["machine"]) >= {"cpu", "cores", "torch"}
    assert written["matmul_gflops"]["1"] > 0
    assert [(r["model"], r["mode"]) for r in written["results"]] == [
        ("semask", "eval"),
        ("semask", "train"),
    ]
    for result in written["results"]:
        latency = result["latency_ms"]
        assert len(latency["runs"]) == 2
        assert 0 < latency["min"] <= latency["median"] <= latency["max"]
        assert latency["first_run"] > 0  # the one warm-up call, timed on its own
        assert result["throughput_img_s"] == pytest.approx(2 / (latency["median"] / 1e3))
        assert result["peak_memory_mb"] > 50 and result["memory_kind"] == "peak_rss"
        assert result["case"] == "cpu/float32/threads=1" and result["parameters"] > 0
    assert written["ratios"] == []
    table = capsys.readouterr().out
    assert "semask  eval" in table and "semask  train" in table and "GFLOP/s" in table


@pytest.mark.parametrize("flags, native", [(["avx2", "fma"], False), (["avx512_bf16"], True)])
def test_bf16_on_a_cpu_without_native_bf16_is_flagged(monkeypatch, tmp_path, capsys, flags, native):
    monkeypatch.setattr(runner, "cpu_model_and_flags", lambda: ("Some CPU", flags))
    assert runner.machine_info("cpu")["cpu_native_bf16"] is native
    monkeypatch.setattr(benchmark, "machine_info", runner.machine_info)
    monkeypatch.setattr(benchmark, "run_case", lambda *args, **kwargs: [])
    report = benchmark.main(["--config-file", CONFIG, "--dtype", "bfloat16", "--no-memory"])
    assert report["machine"]["cpu_native_bf16"] is native
    note = "note: this CPU (Some CPU) has no native bf16 matrix product"
    assert (note in capsys.readouterr().out) is not native


def test_benchmark_bf16_channels_last_cases_without_memory(tmp_path):
    output = tmp_path / "bench.json"
    argv = ["--config-file", CONFIG, "--height", "64", "--width", "64", "--threads", "1"]
    argv += ["--dtype", "float32", "bfloat16", "--channels-last", "on", "--modes", "eval"]
    argv += ["--no-memory", "--iters", "1", "--warmup", "0", "--output", str(output), "--", *TINY]
    report = benchmark.main(argv)
    written = json.loads(output.read_text())
    assert written["opts"] == TINY and written == json.loads(json.dumps(report))
    assert [(r["case"], r["mode"]) for r in written["results"]] == [
        ("cpu/float32/threads=1/channels_last", "eval"),
        ("cpu/bfloat16/threads=1/channels_last", "eval"),
    ]
    assert all(r["peak_memory_mb"] is None for r in written["results"])
    assert all(len(r["latency_ms"]["runs"]) == 1 for r in written["results"])
    assert all("first_run" not in r["latency_ms"] for r in written["results"])  # no warm-up


def test_peak_memory_of_one_case_in_this_process():
    spec = SubjectSpec("semask", 1, 64, 64, CONFIG, tuple(TINY))
    assert measure_memory(spec, Settings(threads=1), "train", warmup=0) > 50


def test_compare_with_hf_without_transformers_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(PeerUnavailableError, match="pip install transformers"):
        require_transformers()
    with pytest.raises(SystemExit):
        benchmark.main(["--config-file", CONFIG, "--compare-with", "hf"])
    err = capsys.readouterr().err
    assert "--compare-with hf needs the optional package 'transformers'" in err


def test_synthetic_samples_are_mapper_shaped():
    (sample,) = synthetic_samples(batch=1, height=70, width=45, num_classes=150, seed=1)
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 70, 45)
    labels = sample["sem_seg"]
    assert labels.dtype == torch.int64 and labels.shape == (70, 45)
    classes = set(labels.unique().tolist()) - {255}
    assert 1 < len(classes) <= 8 and max(classes) < 150
    assert 0.02 < (labels == 255).float().mean() < 0.08
    instances = sample["instances"]
    assert instances.gt_classes.tolist() == sorted(classes)
    for cls, mask in zip(instances.gt_classes, instances.gt_masks.tensor):
        assert torch.equal(mask, labels == cls)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        synthetic_samples(batch=1, height=8, width=8, num_classes=0)


@pytest.fixture(scope="module")
def tiny_model():
    return SeMaskPredictor(build_cfg(CONFIG, [*TINY, "MODEL.DEVICE", "cpu"])).model


def test_analysis_parameter_count_equals_the_model(tiny_model):
    analysis = analyze(tiny_model, 64, 64, depth=2)
    assert analysis.parameters == sum(p.numel() for p in tiny_model.parameters())
    groups = {g["module"]: g for g in analysis.groups}
    assert {"sem_seg_head.pixel_decoder", "sem_seg_head.predictor"} <= set(groups)
    assert all(name.count(".") == 1 for name in groups)
    assert sum(g["parameters"] for g in analysis.groups) == analysis.parameters
    assert groups["sem_seg_head.pixel_decoder"]["macs"] > 0
    assert groups["sem_seg_head.predictor"]["macs"] > 0
    assert sum(g["macs"] for g in analysis.groups) <= analysis.macs
    # the matrix-product-like operators have handles; what is left is elementwise
    assert not set(OP_HANDLES) & set(analysis.uncounted)
    assert {"aten::add", "aten::mul"} <= set(analysis.uncounted)


def test_sdpa_and_deformable_sampling_are_counted(tiny_model):
    counted = analyze(tiny_model, 64, 64, depth=1)
    without = dict(OP_HANDLES)
    try:
        for name in ("aten::scaled_dot_product_attention", "prim::PythonOp.GatherWeightedSum"):
            del OP_HANDLES[name]
        uncounted = analyze(tiny_model, 64, 64, depth=1)
    finally:
        OP_HANDLES.update(without)
    assert uncounted.macs < counted.macs
    assert {"aten::scaled_dot_product_attention", "prim::PythonOp.GatherWeightedSum"} <= set(
        uncounted.uncounted
    )


def test_module_groups_at_depth_one(tiny_model):
    assert module_groups(tiny_model, 1) == ["backbone", "sem_seg_head", "criterion"]


def test_analyze_tool_reports_gflops_per_second(tmp_path, capsys):
    output = tmp_path / "analysis.json"
    argv = ["--config-file", CONFIG, "--height", "64", "--width", "64", "--latency-ms", "50"]
    report = analyze_model.main([*argv, "--output", str(output), *TINY])
    written = json.loads(output.read_text())
    assert written["gflops"] == pytest.approx(2 * written["macs"] / 1e9)
    assert written["achieved_gflops_per_s"] == pytest.approx(written["gflops"] / 0.05)
    assert written["parameters"] == report["parameters"]
    out = capsys.readouterr().out
    assert "uncounted operators" in out and "GFLOP/s achieved" in out


@pytest.mark.slow
def test_compare_with_hf_alternates_both_models_when_installed():
    pytest.importorskip("transformers")
    argv = ["--config-file", CONFIG, "--height", "64", "--width", "64", "--threads", "1"]
    argv += ["--modes", "eval", "--iters", "2", "--warmup", "0", "--no-memory"]
    report = benchmark.main([*argv, "--compare-with", "hf", *TINY])
    assert [r["model"] for r in report["results"]] == ["semask", "hf"]
    hf = report["results"][1]
    assert hf["parameters"] > 40e6  # Swin-T + Mask2Former: about 47 M
    (ratio,) = report["ratios"]
    assert ratio["latency_ratio"] == pytest.approx(
        hf["latency_ms"]["median"] / report["results"][0]["latency_ms"]["median"]
    )
