# queuectl: `make demo` runs the demo, `make test` runs every check. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# `make demo DB=postgres`: the same demo on a throwaway PostgreSQL server.
DB ?= sqlite
demo: $(STAMP)
	DB=$(DB) bash scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

# Every benchmark on both stores (BENCH_STORE=sqlite or postgres for one); PostgreSQL is a
# throwaway server the harness starts, like the tests'.
BENCH_STORE ?= both
bench: $(STAMP)
	$(BIN)/python bench/run.py --store $(BENCH_STORE)

# 2,000 jobs under faults on each store, about twelve minutes each (tests/chaos;
# QUEUECTL_CHAOS_SEED=N repeats a run, QUEUECTL_CHAOS_STORE=sqlite|postgres picks one store).
chaos: $(STAMP)
	QUEUECTL_CHAOS=long $(BIN)/pytest tests/chaos -s
