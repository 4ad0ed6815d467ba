# Two commands for a newcomer: `make demo` and `make test`. Every target works
# from a bare checkout: it creates .venv and installs the pinned set first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export DAGSTER_HOME := $(CURDIR)
export CHURN_DATA_DIR ?= $(CURDIR)/data
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export TQDM_MININTERVAL := 1

.PHONY: install demo test test-fast ui monitor bench serve clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/churn-assets demo

# three test workers on two cores (pytest-xdist, one file each at a time): a quarter of the suite
# waits on servers and subprocesses, which a third worker fills (same machine and day: 611 s
# with 3, 693 s with 2, once the longest files start first)
TEST_WORKERS ?= 3
# Test data (warehouses, Dagster instances, MLflow stores) on tmpfs where there is one: the
# instances' SQLite commits each wait for an fsync on disk (~4.6 ms vs ~0.35 ms in RAM; the
# replays run ~13 % faster). TEST_TMPDIR= keeps the system's temp dir.
TEST_TMPDIR ?= $(if $(wildcard /dev/shm/.),/dev/shm/churn-assets-tests)
PYTEST = $(if $(TEST_TMPDIR),mkdir -p $(TEST_TMPDIR) && TMPDIR=$(TEST_TMPDIR) )$(PY) -m pytest

test: $(STAMP)
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# the fast layer only: unit and direct-asset tests, no replays, servers or subprocess runs
test-fast: $(STAMP)
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

ui: $(STAMP)
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $${PORT:-3000} -w workspace.yaml

# The Evidently monitoring dashboard: project `churn` of the workspace the assets fill
# (MONITOR_PORT overrides 8000; set CHURN_EVIDENTLY_UI_URL too so Dagster's links follow it)
monitor: $(STAMP)
	DO_NOT_TRACK=1 $(VENV)/bin/evidently ui --workspace $(CHURN_DATA_DIR)/evidently --host 127.0.0.1 --port $${MONITOR_PORT:-8000}

# MLflow's model server on models:/churn_model@production (HOST/PORT override 127.0.0.1:5001)
serve: $(STAMP)
	$(PY) -m churn_assets.serve

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(CHURN_DATA_DIR)/warehouse $(CHURN_DATA_DIR)/mlflow $(CHURN_DATA_DIR)/dagster $(CHURN_DATA_DIR)/reports $(CHURN_DATA_DIR)/evidently $(CHURN_DATA_DIR)/analytics $(CHURN_DATA_DIR)/analytics.duckdb
