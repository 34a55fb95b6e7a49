# The front door. `make setup` is idempotent; every other target runs it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medswarm-installed
NPM_STAMP := node_modules/.medswarm-installed
FUZZ_EXAMPLES ?= 4000

.PHONY: setup browser demo test fuzz lint bench clean

setup: $(STAMP) $(NPM_STAMP) browser

# Headless Chromium and its driver for the dashboard's browser test, from Debian's packages
# (no browser download of its own). Installed only when missing; needs root or sudo.
browser:
	@if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing chromium and chromium-driver with apt-get"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "medswarm needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/medswarm testnet run --nodes 4 --config testnet/demo.toml --out runs/demo

# The whole pytest suite, then the bench suite's CI run (bench/suite.py --ci: blob, aggregate,
# secagg-4, gas, fog-int8 and round-4x1M at their quick sizes, about a minute) into
# runs/bench-ci/ (latest.json, scaling.png). make stops at the first command that fails, so a
# failing test fails the target before any bench runs; a bench that fails or runs out of time
# fails it too, a bench figure that misses its target does not.
test: setup
	$(BIN)/pytest
	$(BIN)/python bench/suite.py --ci --out runs/bench-ci/latest.json

# The decoders and the config loader under hypothesis: FUZZ_EXAMPLES examples per fuzz test,
# fresh ones each run (docs/fuzzing.md); `make test` runs the same tests 200 examples each.
fuzz: setup
	MEDSWARM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MEDSWARM_FUZZ_RANDOM=1 $(BIN)/pytest tests/fuzz

# Every medswarm bench in one run: a table, bench/results/latest.json and the scaling plot
# bench/results/scaling.png (docs/benchmarks.md). BENCH_FLAGS=--quick runs each at a small size
# (about 3 minutes; the 16- and 32-process and the 10M-parameter rounds left out).
bench: setup
	$(BIN)/python bench/suite.py $(BENCH_FLAGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	contracts/slither.sh

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache .venv-slither
