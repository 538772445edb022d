# Set-up and the two commands of the README. Everything is installed from the package registry.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The accelerator backend: cpu or nothing (JAX on the CPU), cuda12 (NVIDIA GPUs) or tpu (Cloud TPU
# VMs): pyproject.toml's extras of the same names. The stamps name it: another ACCEL installs again.
ACCEL ?=
ifneq ($(filter-out cpu cuda12 tpu,$(ACCEL)),)
$(error ACCEL=$(ACCEL): expected cuda12, tpu, or cpu / nothing for the CPU)
endif
comma := ,
BACKEND := $(filter-out cpu,$(ACCEL))
STAMP := $(VENV)/.installed$(if $(BACKEND),-$(BACKEND))
TEST_STAMP := $(VENV)/.installed-test$(if $(BACKEND),-$(BACKEND))
EXTRAS := $(if $(BACKEND),[$(BACKEND)])
TEST_EXTRAS := [test$(comma)lm_eval$(if $(BACKEND),$(comma)$(BACKEND))]
# T0's own prompts (the default prompts of the t0_eval suite) are the template files of promptsource
# 0.2.3. That release declares Python >=3.7,<3.10 and pins streamlit 0.82, black, isort and
# `datasets`, none of which the harness uses: it reads the package's YAML files only
# (eval/promptsource_bridge.py) and never imports its code. So it comes from the registry without
# its dependencies and without the Python check. The stamp names the version: a new pin reinstalls.
PROMPTSOURCE_VERSION := 0.2.3
PROMPTSOURCE_STAMP := $(VENV)/.installed-promptsource-$(PROMPTSOURCE_VERSION)
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
	$(PY) -m pip install $(PIP_QUIET) -e ".$(EXTRAS)"
	touch $@

# The tests exercise the optional lm-evaluation-harness adaptor too, so CI installs that extra.
$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_QUIET) -e ".$(TEST_EXTRAS)"
	touch $@ $(STAMP)

$(PROMPTSOURCE_STAMP): | $(PY)
	$(PY) -m pip install $(PIP_QUIET) --no-deps --ignore-requires-python \
	  promptsource==$(PROMPTSOURCE_VERSION)
	touch $@

install: $(STAMP) $(PROMPTSOURCE_STAMP)
install-test: $(TEST_STAMP) $(PROMPTSOURCE_STAMP)

demo: install
	$(PY) -m experiments.grid --gin_file=gin_configs/grids/embedded_smoke.gin --gin.GRID_DIR="'$(GRID_DIR)'"

test: install-test
	$(PY) -m pytest -n 2 --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
