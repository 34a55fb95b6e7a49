# The front door. `make setup` is idempotent; every other target runs it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medswarm-installed
NPM_STAMP := node_modules/.medswarm-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP) $(NPM_STAMP)

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

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/federation_round.py --rounds 10

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	contracts/slither.sh

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache .venv-slither
