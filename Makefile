# Everything runs as root (sudo make …): the set-up installs Debian packages,
# and the lab needs namespaces and XDP.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ZB := $(VENV)/bin/zbanner-xdp

.PHONY: setup demo test unit integration lint bench clean lab-down

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@$(VENV)/bin/ruff check zbanner_xdp probes bpf tests scripts
	@$(VENV)/bin/pytest -q tests

unit: setup
	@$(VENV)/bin/pytest -q tests/unit

integration: setup
	@$(VENV)/bin/pytest -q tests/integration

lint: setup
	@$(VENV)/bin/ruff check zbanner_xdp probes bpf tests scripts

# Writes docs/bench/ (committed: every figure the README shows) and rewrites the README's tables.
bench: setup
	@$(PY) scripts/bench.py --out docs/bench --readme --targets 1024

lab-down:
	@$(ZB) lab down

clean: lab-down
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
