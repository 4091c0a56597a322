# CryptoCity Pay — `make help` lists the targets.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test soak drills lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml sandbox/solana/node/package-lock.json
	scripts/ensure-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(PY) -m sandbox.solana.install
	@touch $(STAMP)

install: $(STAMP) ## create the venv and install everything (Python and the npm validator)

demo: install ## run the whole system with demo data on http://127.0.0.1:8000 (Ctrl-C stops it)
	$(VENV)/bin/cryptocity demo

test: install ## run the tests (SQLite, then PostgreSQL when its server is installed)
	PY=$(PY) scripts/run-tests.sh

soak: install ## ten minutes of payments through a real worker while the node is killed and Redis flushed
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(PY) -m pytest tests/btc/test_btc_soak.py -q -s

drills: install ## fault drills on SQLite and PostgreSQL, audited (~50 min; DRILLS_ARGS=--quick: ~4 min)
	$(PY) -m drills $(DRILLS_ARGS)

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install ## run the benchmarks; writes bench/results.json
	$(PY) -m bench

clean: ## remove the venv, demo data and caches
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache sandbox/solana/node/node_modules
