# Two entry points for users: `make quickstart` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semask-env

.PHONY: env lint test test-fast

env: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-export.txt pyproject.toml \
    tools/install_detectron2.py tools/detectron2_c_stand_in.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt \
		-r requirements-export.txt
	$(BIN)/python tools/install_detectron2.py
# panopticapi (PQ of COCOPanopticEvaluator): a PyPI repackaging whose metadata wrongly pins
# numpy<2, hence --no-deps (its real needs are in requirements.txt). With internet access,
# `pip install git+https://github.com/cocodataset/panopticapi` installs the original instead.
	$(BIN)/python -m pip install --quiet --no-deps panopticapi-lite
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

lint: env
	$(BIN)/ruff check .
	$(BIN)/black --check --quiet .
	$(BIN)/isort --check-only --quiet .

# pytest exits 5 when it collects no test, which fails this target (and CI) as intended.
test: lint
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

# On a CUDA machine: the Swin-T Mask2Former config at 512 x 512 in float32, bfloat16 and float16,
# each case checked against a float32 eager copy on the CPU (float32 cases must agree to 1e-4):
# eager (eval + training step + peak memory), then compiled (eval only, no memory runs, so that each
# dtype compiles once). Results in $(GPU_OUTPUT)/benchmark_gpu.json and benchmark_gpu_compiled.json.
GPU_OUTPUT ?= output
GPU_BENCHMARK = $(BIN)/python tools/benchmark.py \
	--config-file configs/ade20k/mask2former/semask_swin_tiny_bs16_160k.yaml \
	--device cuda --reference-device cpu --dtype float32 bfloat16 float16 \
	--iters 20 --warmup 3 --parity-tolerance 1e-4
.PHONY: benchmark-gpu
benchmark-gpu: env
	mkdir -p $(GPU_OUTPUT)
	$(GPU_BENCHMARK) --compile off --output $(GPU_OUTPUT)/benchmark_gpu.json -- MODEL.WEIGHTS ""
	$(GPU_BENCHMARK) --compile on --modes eval --no-memory \
		--output $(GPU_OUTPUT)/benchmark_gpu_compiled.json -- MODEL.WEIGHTS ""

# The README's main command: generate the quick-start data set if absent, train a small SeMask
# model on it on the CPU, evaluate, and write visualisations (see tools/quickstart.py).
# TASK=panoptic trains on the panoptic flavour and reports PQ, SQ, RQ and mIoU.
TASK ?= semantic
.PHONY: quickstart
quickstart: env
	$(BIN)/python tools/quickstart.py --task $(TASK)
