# Two commands do everything on a fresh Debian machine (as root):
#   make demo   the whole loop on the shipped plan, against the simulated RecoveryOS
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup debs demo test lint typecheck bench render clean

setup: debs $(STAMP)

debs:
	@scripts/install-debs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

demo: setup
	$(BIN)/canary-guard demo $(ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python scripts/typecheck.py
	$(BIN)/python scripts/run-tests $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/python scripts/typecheck.py

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

render: $(STAMP)
	$(BIN)/python deploy/render.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
