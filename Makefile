# Everything installs into a local virtual environment from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench bench-cluster demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check cavelite tests benchmarks examples
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/runtime_bench.py
	$(PY) benchmarks/figures_bench.py
	$(PY) benchmarks/telemetry_bench.py

bench-cluster: $(STAMP)
	$(PY) benchmarks/cluster_bench.py

demo: $(STAMP)
	$(VENV)/bin/cavelite demo

clean:
	rm -rf $(VENV) build *.egg-info
