# agentceiling: `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Not taken from the environment (a DATA_DIR there names someone's data): `make run DEMO_DIR=...`.
DEMO_DIR := .agentceiling-demo

.PHONY: run test lint typecheck gen venv clean bench

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[test,dev]"
	@touch $(STAMP)

venv: $(STAMP)

# Stubs are committed; `make gen` regenerates them after a .proto change.
gen: $(STAMP)
	$(PY) scripts/genproto.py

run: $(STAMP)
	$(PY) scripts/demo.py --data-dir $(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/authorize.py
	$(PY) bench/terraform_apply.py

clean:
	rm -rf $(VENV) build src/*.egg-info
	@if [ -f "$(DEMO_DIR)/.agentceiling-demo" ]; then rm -rf "$(DEMO_DIR)"; fi
