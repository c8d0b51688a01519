# musicbench: `make demo` runs the benchmark on the embedded demo set; `make test` runs the tests.
# Both install first (into .venv) when needed. Everything works offline once the packages are installed.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch (on this project's machines pip takes it from local disk; elsewhere pick your build).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.musicbench-installed
# setup.cfg extras installed by `make install`: dev (tests, ruff), server (PostgreSQL driver for a shared MLflow
# server), ray (--engine ray), faiss (--index faiss), madmom (the deepchroma encoders). Comma-separated; add one here
# to have CI install and test it.
EXTRAS ?= dev,server,ray,faiss,madmom
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlruns/mlflow.db

.PHONY: install demo test lint format mlflow-demo ui bench clean-demo

install: $(STAMP)

EXAMPLE_PLUGIN := examples/musicbench-example-plugin

$(STAMP): setup.cfg pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" -e ".[$(EXTRAS)]"
	# tinysoundfont renders the demo set; its pyaudio dependency is only for live playback and does not build here
	$(BIN)/python -m pip install --quiet --no-deps tinysoundfont==0.3.7
	# the example plug-in (an encoder and a metric declared by entry points): tests/test_plugins.py runs a suite with it
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e $(EXAMPLE_PLUGIN)
	touch $(STAMP)

demo: install
	$(BIN)/musicbench demo

test: install lint
	$(BIN)/python -m pytest

# ruff, configured in pyproject.toml: lint and format in check mode (`make format` applies both).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

mlflow-demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mlflow run . -P encoder=mfcc --env-manager local

ui: install
	$(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)"

# issue 11's performance targets side by side, one table, exit 1 on any FAIL (BENCHMARKS.md); options, e.g.
# `make bench BENCH_ARGS="--only 3,7"` or `BENCH_ARGS=--quick` (perf/bench.py --help)
bench: install
	$(BIN)/python perf/bench.py $(BENCH_ARGS)
