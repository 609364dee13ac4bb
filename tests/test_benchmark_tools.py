"""tools/benchmark.py and tools/analyze_model.py on the quick-start config (tiny sizes, one or two
iterations): the JSON they write, the parameter count, the missing-transformers message."""

import json
import sys

import pytest
import torch
from conftest import REPO_ROOT

from semask.benchmarking import Settings, SubjectSpec, runner, score_agreement, synthetic_samples
from semask.benchmarking.flops import OP_HANDLES, analyze, module_groups
from semask.benchmarking.hf_peer import PeerUnavailableError, require_transformers
from semask.benchmarking.runner import measure_memory
from semask.benchmarking.subjects import stacked_semantic_scores
from semask.benchmarking.timing import matmul_rate
from semask.engine import build_cfg
from semask.modeling import onednn_linear
from semask.modeling.onednn_linear import onednn_available
from semask.predictor import SeMaskPredictor

sys.path.insert(0, str(REPO_ROOT / "tools"))
import analyze_model  # noqa: E402
import benchmark  # noqa: E402
import benchmark_backbone  # noqa: E402

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
    assert list(written["matmul_gflops"]) == ["float32"]
    assert written["matmul_gflops"]["float32"]["1"] > 0
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
        assert result["agreement"] is None  # the float32 eager case is the reference itself
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


def test_matmul_rate_is_measured_for_float32_and_every_listed_dtype(monkeypatch, capsys):
    monkeypatch.setattr(benchmark, "run_case", lambda *args, **kwargs: [])
    argv = ["--config-file", CONFIG, "--dtype", "bfloat16", "--threads", "1", "2"]
    report = benchmark.main([*argv, "--matmul-rate", "--no-memory"])
    rates = report["matmul_gflops"]
    assert list(rates) == ["float32", "bfloat16"]
    assert all(list(per_thread) == ["1", "2"] for per_thread in rates.values())
    assert all(rate > 0 for per_thread in rates.values() for rate in per_thread.values())
    printed = capsys.readouterr().out
    assert "matmul 1024x1024 bfloat16, 2 threads:" in printed
    assert "matmul 1024x1024 float32, 1 threads:" in printed


@pytest.mark.skipif(not onednn_available(), reason="this torch has no oneDNN linear kernel")
def test_float32_matmul_rate_is_that_of_the_onednn_product(monkeypatch):
    """The float32 CPU ceiling is the product the linear layers use (oneDNN), not MKL's."""
    shapes, product = [], onednn_linear._onednn_product

    def counted(*args):
        shapes.append(tuple(args[0].shape))
        return product(*args)

    monkeypatch.setattr(onednn_linear, "_onednn_product", counted)
    assert matmul_rate(size=64, repeats=2) > 0
    assert shapes == [(64, 64)] * 3  # one warm-up and two timed products
    assert matmul_rate(size=64, repeats=2, dtype=torch.bfloat16) > 0
    assert len(shapes) == 3  # bf16 goes to torch.mm


def test_benchmark_bf16_channels_last_cases_without_memory(tmp_path, capsys):
    output = tmp_path / "bench.json"
    argv = ["--config-file", CONFIG, "--height", "64", "--width", "64", "--threads", "1"]
    argv += ["--dtype", "float32", "bfloat16", "--channels-last", "on", "--modes", "eval"]
    argv += ["--no-memory", "--iters", "1", "--warmup", "0", "--output", str(output), "--", *TINY]
    runner.float32_eager_scores.cache_clear()
    report = benchmark.main(argv)
    # the two cases share one reference, built and run once
    assert runner.float32_eager_scores.cache_info()[:2] == (1, 1)  # hits, misses
    written = json.loads(output.read_text())
    assert written["opts"] == TINY and written == json.loads(json.dumps(report))
    assert [(r["case"], r["mode"]) for r in written["results"]] == [
        ("cpu/float32/threads=1/channels_last", "eval"),
        ("cpu/bfloat16/threads=1/channels_last", "eval"),
    ]
    assert all(r["peak_memory_mb"] is None for r in written["results"])
    assert all(len(r["latency_ms"]["runs"]) == 1 for r in written["results"])
    assert all("first_run" not in r["latency_ms"] for r in written["results"])  # no warm-up
    assert written["reference_device"] == "cpu"
    # both against a float32 eager, contiguous copy of the model built afresh from the same seed
    float32, bfloat16 = (r["agreement"] for r in written["results"])
    assert set(float32) == set(bfloat16) == {"argmax_agreement", "relative_error", "max_abs_error"}
    assert float32["relative_error"] < 1e-4 and float32["argmax_agreement"] > 0.999
    # bf16 autocast really ran: the scores differ from float32, but not wildly
    assert 1e-4 < bfloat16["relative_error"] < 0.1 and bfloat16["max_abs_error"] > 0
    assert 0 <= bfloat16["argmax_agreement"] <= 1
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("cpu/bfloat16"))
    assert row.endswith(f"{100 * bfloat16['argmax_agreement']:.2f}")


@pytest.mark.slow
def test_compiled_float32_matches_the_eager_reference():
    # about two minutes on 2 cores, nearly all of it torch.compile
    argv = ["--config-file", CONFIG, "--height", "64", "--width", "64", "--compile", "on"]
    argv += ["--modes", "eval", "--iters", "1", "--warmup", "1", "--no-memory"]
    report = benchmark.main([*argv, "--parity-tolerance", "1e-5", "--", *TINY])
    (result,) = report["results"]
    assert result["case"].endswith("/compile") and result["latency_ms"]["first_run"] > 0
    assert result["agreement"]["relative_error"] < 1e-5
    assert result["agreement"]["argmax_agreement"] > 0.999


def test_score_agreement_by_hand():
    reference = torch.zeros(1, 2, 2, 2)
    reference[0, 0] = 1.0  # class 0 wins everywhere
    scores = reference.clone()
    scores[0, 1, 0, 0] = 2.0  # one pixel of four flips to class 1
    agreement = score_agreement(scores.bfloat16(), reference)
    assert agreement["argmax_agreement"] == 0.75
    assert agreement["relative_error"] == pytest.approx(2.0 / 2.0)  # ||diff|| 2, ||ref|| 2
    assert agreement["max_abs_error"] == 2.0
    with pytest.raises(ValueError, match=r"one shape, got \(1, 2, 2, 2\) and \(2, 2, 2\)"):
        score_agreement(scores, reference[0])


def test_semantic_scores_of_outputs_without_sem_seg_are_none():
    outputs = [{"sem_seg": torch.ones(3, 4, 5)}, {"sem_seg": torch.zeros(3, 4, 5)}]
    assert stacked_semantic_scores(outputs).shape == (2, 3, 4, 5)
    assert stacked_semantic_scores([{"instances": None}]) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
@pytest.mark.parametrize("option", ["--device", "--reference-device"])
def test_a_cuda_device_without_cuda_is_refused(capsys, option):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--config-file", CONFIG, option, "cuda"])
    assert f"{option} cuda: CUDA is not available on this machine" in capsys.readouterr().err


def test_an_override_without_value_is_refused_before_any_run(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--config-file", CONFIG, "--", "MODEL.WEIGHTS"])
    assert "config override 'MODEL.WEIGHTS' has no value" in capsys.readouterr().err


def test_an_output_in_a_missing_folder_is_refused_before_any_run(tmp_path, capsys):
    missing = tmp_path / "no such folder" / "bench.json"
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--config-file", CONFIG, "--output", str(missing)])
    assert f"--output {missing}: its folder does not exist" in capsys.readouterr().err


def fake_result(case, dtype, relative_error):
    agreement = None if relative_error is None else {"relative_error": relative_error}
    return {
        "case": case,
        "model": "semask",
        "mode": "eval",
        "dtype": dtype,
        "latency_ms": {"median": 1.0},
        "agreement": agreement,
    }


def test_parity_tolerance_fails_on_a_float32_case_beyond_it(monkeypatch, tmp_path):
    results = [
        fake_result("cuda/float32/threads=1", "float32", 3e-4),
        fake_result("cuda/float32/threads=1/compile", "float32", 5e-5),
        fake_result("cuda/bfloat16/threads=1", "bfloat16", 2e-2),  # not a parity case
        fake_result("cpu/float32/threads=1", "float32", None),  # the reference itself
    ]
    assert runner.parity_failures(results, 1e-4) == [
        "cuda/float32/threads=1 semask: relative error 3.00e-04"
    ]
    assert runner.parity_failures(results, 1e-3) == []
    monkeypatch.setattr(benchmark, "run_case", lambda *args, **kwargs: results)
    monkeypatch.setattr(benchmark, "format_table", lambda results: "")
    output = tmp_path / "bench.json"
    argv = ["--config-file", CONFIG, "--parity-tolerance", "1e-4", "--output", str(output)]
    with pytest.raises(
        SystemExit, match=r"(?s)cpu float32 eager failed \(tolerance 0.0001\).*3.00e-04"
    ):
        benchmark.main(argv)
    assert json.loads(output.read_text())["results"] == results  # written before failing
    loose = ["--config-file", CONFIG, "--parity-tolerance", "1e-3"]
    assert benchmark.main(loose)["results"] == results


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
    report = analyze_model.main([*argv, "--output", str(output), "--", *TINY])
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


@pytest.mark.parametrize("cpu_linear", ["onednn", "torch"])
def test_backbone_benchmark_routes_linears_and_compares_both_attentions(
    monkeypatch, capsys, cpu_linear
):
    routed = []

    def recording_route(model, backend):
        routed.append(backend)
        return onednn_linear.route_linears(model, backend)

    monkeypatch.setattr(benchmark_backbone, "route_linears", recording_route)
    argv = ["--size", "T", "--height", "64", "--width", "64", "--iters", "1", "--warmup", "0"]
    benchmark_backbone.main([*argv, "--device", "cpu", "--cpu-linear", cpu_linear])
    assert routed == [cpu_linear]
    out = capsys.readouterr().out
    assert "sdpa " in out and "matmul " in out
    assert float(out.rsplit("max |difference| ", 1)[1]) < 1e-4
