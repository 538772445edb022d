# Set-up and the two commands of the README. Everything is installed from the package registry.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
GRID_DIR ?= runs/embedded_smoke
PYTEST_ARGS ?=
# pip prints errors only; `make demo PIP_QUIET=` shows all its lines.
PIP_QUIET ?= --quiet --quiet

.PHONY: demo test install install-test clean

$(PY):
	@echo "creating $(VENV) and installing the harness (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip setuptools wheel

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_QUIET) -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_QUIET) -e ".[test]"
	touch $@ $(STAMP)

install: $(STAMP)
install-test: $(TEST_STAMP)

demo: $(STAMP)
	$(PY) -m experiments.grid --gin_file=gin_configs/grids/embedded_smoke.gin --gin.GRID_DIR="'$(GRID_DIR)'"

test: $(TEST_STAMP)
	$(PY) -m pytest -n 2 --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
