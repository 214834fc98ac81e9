# memwarden — the README's commands: `make demo`, `make test`; also `make bench`, `make lint`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: all demo test lint typecheck imports unit bench fuzz sysdeps clean sanitize

all: test

# setup.py and the C source are prerequisites: `pip install -e` recompiles the extension in place.
$(STAMP): pyproject.toml setup.py src/memwarden/_sampler.c src/memwarden/_lrucore.c
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

# The profiler's C extension under AddressSanitizer and UBSan: built into build/asan (a copy
# of the package) and its tests run against that copy with libasan preloaded. CPython's
# own blocks still held at exit are not leaks, hence detect_leaks=0.
ASAN_DIR := build/asan
sanitize: $(STAMP)
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR) && cp -r src/memwarden $(ASAN_DIR)/
	rm -f $(ASAN_DIR)/memwarden/_sampler*.so
	gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -std=c11 -Wall -Wextra -Wno-unused-parameter -fPIC -shared \
	  -I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	  src/memwarden/_sampler.c -lm \
	  -o $(ASAN_DIR)/memwarden/_sampler$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  PYTHONPATH=$(CURDIR)/$(ASAN_DIR) $(BIN)/pytest -q -p no:cacheprovider \
	  tests/unit/test_profiler.py tests/integration/test_profiler_native.py

bench: $(BENCH_STAMP)
	$(PY) bench/run.py

# Fuzz parse_size, load_config and the trace reader against their contracts (hypothesis,
# fresh seeds each round) for FUZZ_MINUTES in total; exit 1 with the failing input.
FUZZ_MINUTES ?= 3
fuzz: $(STAMP)
	$(PY) bench/fuzz.py --minutes $(FUZZ_MINUTES)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage* htmlcov build dist
