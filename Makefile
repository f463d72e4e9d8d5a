# Entry points: `make demo` runs the main job on bundled data, `make test` runs the test suite and
# `make lint` runs the linter (ruff, configured in ruff.toml).
#
# All install what they need first, into
#   - the interpreter given as PYTHON=... (used as is), else
#   - the active virtual or conda environment ($VIRTUAL_ENV / $CONDA_PREFIX), else
#   - a project-local .venv, created on first use from the python3 on PATH (>= 3.10). This is what
#     makes them work on a fresh machine whose system Python refuses `pip install` (PEP 668).
PIP_FLAGS ?= --quiet --disable-pip-version-check
BASE_PYTHON ?= python3
VENV ?= .venv

ifeq ($(origin PYTHON),undefined)
  ifneq ($(strip $(VIRTUAL_ENV)$(CONDA_PREFIX)),)
    PYTHON := python3
  else
    PYTHON := $(VENV)/bin/python
    SETUP := $(VENV)/bin/python
  endif
endif

.PHONY: install demo test lint bench

$(VENV)/bin/python:
	@$(BASE_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "error: manifold-flows needs Python >= 3.10; '$(BASE_PYTHON)' is $$($(BASE_PYTHON) --version 2>&1)." \
	       "Run: make $(MAKECMDGOALS) BASE_PYTHON=python3.11 (or activate an environment with a newer Python)" >&2; exit 1; }
	@echo "no virtual environment is active: creating $(VENV) with $$($(BASE_PYTHON) --version)"
	@$(BASE_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(BASE_PYTHON) -m venv' failed; on Debian/Ubuntu install it with: sudo apt install python3-venv" >&2; exit 1; }

install: $(SETUP)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev]"

demo: install
	$(PYTHON) -m manifold_flows.cli train --data volcano --steps 3000 --eval-every 1000 --out runs/volcano --overwrite

test: install
	$(PYTHON) -m pytest -q tests

lint: install
	$(PYTHON) -m ruff check .

bench: install
	$(PYTHON) benchmarks/bench_manifolds.py
