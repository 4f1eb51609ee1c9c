# Two commands for a fresh machine: `make train` and `make test`. Each creates or refreshes
# the virtualenv in .venv first (torch is installed on its own so no resolver pulls another build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dgm-installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install train test test-slow bench lint clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,sweep]"
	touch $(STAMP)

install: $(STAMP)

## Train the default experiment (VAE on 5,000 embedded MNIST digits, ~3 min on 2 CPU cores).
train: $(STAMP)
	$(BIN)/dgm-train $(ARGS)

## The default test suite, two pytest-xdist workers (one per core here, one torch thread each), a test
## file per worker at a time so module-scoped trained runs are built once; the console scripts run in
## the workers' own processes (tests/inprocess.py). 7-8 min wall, 10.8-12.6 CPU-minutes on 2 idle CPU cores
## (2026-12-07; 14 min and 24.1 CPU-minutes before the in-process runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile $(ARGS)

## Long runs, on purpose only: baselines and benchmarks.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(ARGS)

## Every benchmark in one run: benchmarks/results/<date>-<host>.json and the table in benchmarks/README.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs .pytest_cache
