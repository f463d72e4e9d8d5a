# Two entry points: `make demo` runs the main job on bundled data, `make test` runs the test suite.
# Both install what they need into the current Python environment first.
PYTHON ?= python3
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev]"

demo: install
	$(PYTHON) -m manifold_flows.cli train --data volcano --steps 3000 --eval-every 1000 --out runs/volcano

test: install
	$(PYTHON) -m pytest -q tests

bench: install
	$(PYTHON) benchmarks/bench_manifolds.py
