# Everything installs into a local virtual environment from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench bench-cluster bench-agent demo clean

# bfcl-eval (the agent benchmark's BFCL suite) goes in without its dependencies: its pins
# conflict with ours, and its data, API classes and checkers need none of them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps bfcl-eval mpmath
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

# The agent benchmark: the whole oracle, offline. For a model, see benchmarks/agents/README.md.
bench-agent: $(STAMP)
	$(PY) -m benchmarks.agents --model oracle --quiet --out /tmp/cavelite-bench-agent-oracle

demo: $(STAMP)
	$(VENV)/bin/cavelite demo

clean:
	rm -rf $(VENV) build *.egg-info
