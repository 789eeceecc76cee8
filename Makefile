# Two entry points: `make demo` (the main job on the offline testbed; it rewrites demo_out/) and `make test`
# (lint + tests). `make install` only creates .venv with the package and its test extra.
# Both create .venv on first use. TORCH_SPEC picks the torch build: the default is the CPU wheel
# this project is developed on; on a GPU machine use e.g. `make demo TORCH_SPEC=torch`.
# CONSTRAINTS pins every package to the development install (constraints.txt: the install that reproduces
# the published numbers; torch by version only, so TORCH_SPEC still picks the build);
# `make install CONSTRAINTS=` installs the newest versions the package allows.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
DEMO_ARGS ?=
# the test suite's pytest-xdist workers (tests/conftest.py gives each its share of the cores); `auto`: one per core
TEST_WORKERS ?= 2
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: demo test lint install clean

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIN) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q $(PIN) -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/negenc demo --overwrite $(DEMO_ARGS)

lint: $(BIN)/.installed
	$(BIN)/python -m ruff check negation_encoder negation_testbed integrations eval_t2i eval_seg tests benchmarks
	$(BIN)/lint-imports

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) demo_out *.egg-info
