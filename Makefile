# seqcast: `make repro` runs the whole pipeline, `make test` the test suite.
# Both create .venv from uv.lock first, and only when it is missing or outdated.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8
HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
SERVE_PORT ?= 5001
PREFECT_PORT ?= 4200
EXPS_WIDTH ?= 120
# pytest-xdist workers for `make test` (0: one process, in collection order).
TEST_WORKERS ?= 2

export PATH := $(CURDIR)/$(BIN):$(PATH)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export DO_NOT_TRACK := 1
# MLflow links printed by the stages and in the Prefect report open the UI `make ui` serves.
export SEQCAST_MLFLOW_UI ?= http://$(HOST):$(MLFLOW_PORT)
# .pyc at install time: `import prefect` drops from ~3.4 s to ~1.1 s in every stage process.
export UV_COMPILE_BYTECODE := 1

.PHONY: help env repro promote exps tune tune-apply pipeline test lint format ui serve prefect-server prefect-stop schedule trigger bench clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

env: $(STAMP) ## create .venv from uv.lock (only when missing or outdated)

$(STAMP): uv.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen
	@touch $(STAMP)

repro: $(STAMP) ## run the whole pipeline on the shipped data (dvc repro)
	$(BIN)/python -m pipelines.server run --port $(PREFECT_PORT) -- dvc repro

promote: $(STAMP) ## run the promotion gate again from this checkout (e.g. after `dvc exp apply`)
	$(BIN)/python -m pipelines.server run --port $(PREFECT_PORT) -- dvc repro --force --single-item promote

exps: $(STAMP) ## compare experiments in EXPS_WIDTH (120) columns: changed params, short metric names
	$(BIN)/seqcast exps --width $(EXPS_WIDTH)

tune: $(STAMP) ## hyperparameter search (params.yaml search:) on Ray; best settings in tune/best.yaml
	$(BIN)/python -m pipelines.server run --port $(PREFECT_PORT) -- \
		sh -c 'dvc repro window && python -m pipelines.tune'


tune-apply: $(STAMP) ## run tune/best.yaml's settings as a DVC experiment (dvc exp run -S ...)
	$(BIN)/python -m pipelines.server run --port $(PREFECT_PORT) -- $(BIN)/seqcast tune-apply

pipeline: $(STAMP) ## one run of the pipeline flow: ingest, dvc repro, report artifact
	$(BIN)/python -m pipelines.server run --port $(PREFECT_PORT) -- $(BIN)/python -m pipelines.pipeline

test: $(STAMP) ## run the test suite on TEST_WORKERS (2) processes, a whole file per worker
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src pipelines tests benchmarks
	$(BIN)/ruff format --check src pipelines tests benchmarks

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format src pipelines tests benchmarks
	$(BIN)/ruff check --fix src pipelines tests benchmarks

ui: $(STAMP) ## the MLflow UI on the local store, at http://127.0.0.1:5000 (MLFLOW_PORT)
	@mkdir -p mlruns
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host $(HOST) --port $(MLFLOW_PORT)

serve: $(STAMP) ## serve the champion model at http://127.0.0.1:5001/invocations (seqcast serve)
	$(BIN)/seqcast serve --host $(HOST) --port $(SERVE_PORT)

# Prefect's own background server, its history in .prefect/; `make repro` runs reuse it. The UI
# asks /ui-settings for its API URL, which follows PREFECT_SERVER_API_HOST/PORT, not --port.
PREFECT_SERVER_ENV := PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_API_HOST=$(HOST) \
	PREFECT_SERVER_API_PORT=$(PREFECT_PORT) PREFECT_SERVER_UI_API_URL=http://$(HOST):$(PREFECT_PORT)/api

prefect-server: $(STAMP) ## background Prefect server + UI at http://127.0.0.1:4200 (PREFECT_PORT)
	$(PREFECT_SERVER_ENV) $(BIN)/prefect server start --background --host $(HOST) --port $(PREFECT_PORT) --analytics-off

prefect-stop: ## stop the background Prefect server started from this checkout
	PREFECT_HOME=$(CURDIR)/.prefect $(BIN)/prefect server stop

schedule: $(STAMP) ## serve the pipeline on params.yaml schedule.cron until Ctrl-C
	$(BIN)/python -m pipelines.deploy --port $(PREFECT_PORT)

trigger: $(STAMP) ## run the served pipeline now
	PREFECT_API_URL=$${PREFECT_API_URL:-http://$(HOST):$(PREFECT_PORT)/api} $(BIN)/prefect deployment run 'seqcast-pipeline/seqcast-schedule'

bench: $(STAMP) ## benchmarks: figures printed and written to benchmarks/results/
	$(BIN)/python -m benchmarks.run

clean: ## remove pipeline outputs (not the MLflow store)
	rm -rf data/prepared data/windows models plots evaluation metrics reports/validation reports/report
