# The two commands of the README (`make demo`, `make test`) and the benchmarks.
# Each target installs what it needs into .venv first (pinned by constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo check test bench check-dataflow

$(BIN)/.installed: setup.py constraints.txt
	@echo "== installing into $(VENV): pip, then the pinned dependencies (setup.py, constraints.txt; ~1-2 min the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==23.2.1
	$(BIN)/pip install --progress-bar off -c constraints.txt -e ".[test]"
	@echo "== installed: $(BIN)/opentrack"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python -m pipeline.commands.demo

# Lint and format, the layers' import contracts, types (settings in pyproject.toml).
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest -q --durations=25 tests

bench: install
	$(BIN)/python -m bench.pure_chain

# The batch, backfill and streaming graphs built offline as Dataflow would receive them.
check-dataflow: install
	$(BIN)/python -m pytest -q tests/unit/test_dataflow_dry_run.py
