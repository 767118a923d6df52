# Targets a newcomer can guess. `make run` and `make test` set everything up themselves.
PY := .venv/bin/python
REGISTRY ?= ghcr.io/fashion-drift
TAG ?= $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' components/__init__.py)

.PHONY: help setup run test compile lint format bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

setup: ## create .venv with the pinned packages and install Debian's dataset-fashion-mnist
	@bash scripts/setup.sh

run: setup ## run the whole training pipeline locally (kfp.local, CPU) and print the drift report's path
	$(PY) pipeline.py run --local

test: setup ## run the test suite (starts and stops the storage emulators and loopback servers itself)
	$(PY) -m pytest -q

compile: setup ## compile the pipeline YAMLs into pipelines/
	$(PY) pipeline.py compile --registry $(REGISTRY) --tag $(TAG)

lint: setup ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup ## apply ruff's formatting
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup ## run every benchmark script and print its figures
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
