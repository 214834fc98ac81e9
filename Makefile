# memwarden — the README's commands: `make demo`, `make test`; also `make bench`, `make lint`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: all demo test lint typecheck imports unit bench sysdeps clean

all: test

# setup.py and the C source are prerequisites: `pip install -e` recompiles the extension in place.
$(STAMP): pyproject.toml setup.py src/memwarden/_sampler.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	@touch $@

# System tools some tests drive for real (headless chromium for the HTML report,
# promtool for the alert rules, GNU time for the peak-agreement test). Installed when missing and possible; the tests
# that need them skip with the reason otherwise.
sysdeps:
	@bash scripts/sysdeps.sh

demo: $(STAMP)
	$(BIN)/memwarden demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

# Two processes share the 2 cores (-n 2). Memory measurements that coverage's tracer
# would distort (marked `untraced`) run in a second pass without coverage.
PYTEST := $(BIN)/pytest -q -p no:cacheprovider -n 2

test: $(STAMP) sysdeps lint
	$(PYTEST) -m "not untraced" --cov=memwarden --cov-report=term --cov-report=xml:.coverage.xml
	$(PYTEST) -m untraced

bench: $(BENCH_STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage* htmlcov build dist
