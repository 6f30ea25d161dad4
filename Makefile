# Bootstraps a Python 3.12 venv and runs the project. Every target installs what it needs.
SHELL := /bin/bash
VENV ?= .venv
# python3.12 may be a pyenv shim that refuses to run unless 3.12 is selected; find a real one.
PYTHON312 ?= $(shell for p in python3.12 $$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 2>/dev/null); do \
  $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo fashion-mnist clean

venv: $(STAMP)

# The layer alone is `pip install .` (jax, flax, numpy); training and the tests need the extras.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON312)" || { echo "error: no working python3.12 found; install Python 3.12 (jax>=0.11 needs it) or pass PYTHON312=/path/to/python3.12"; exit 1; }
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[train,test]'
	touch $(STAMP)

# The main job: long-tailed digits, baseline vs +BatchFormer paired over 10 seeds, table + plots.
demo: venv
	$(PY) -m bf_jax.demo --workdir runs/demo --seeds 10

# Fashion-MNIST-LT, the tables of docs/fashion_mnist.md (hours on 2 cores; finished runs are kept,
# so a stopped sweep resumes). DATA_DIR: the four IDX files or a TFDS preparation; by default
# Debian's folder, installed (dataset-fashion-mnist, as root or through sudo) when missing.
# CELLS picks some cells (tools/fashion_mnist_tables.sh).
FMNIST_DEBIAN := /usr/share/datasets/fashion-mnist
DATA_DIR ?= $(FMNIST_DEBIAN)
fashion-mnist: venv
	@if [ ! -e "$(DATA_DIR)/train-images-idx3-ubyte.gz" ] && [ ! -e "$(DATA_DIR)/train-images-idx3-ubyte" ] \
	    && [ ! -d "$(DATA_DIR)/fashion_mnist" ]; then \
	  if [ "$(DATA_DIR)" != "$(FMNIST_DEBIAN)" ]; then \
	    echo "error: DATA_DIR=$(DATA_DIR) holds neither Fashion-MNIST's four IDX files nor a TFDS fashion_mnist/; put them there, or leave DATA_DIR out to install Debian's dataset-fashion-mnist"; exit 2; fi; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; fi
	PY=$(PY) DATA_DIR=$(DATA_DIR) tools/fashion_mnist_tables.sh $(CELLS)

# 8 forced CPU devices are set by tests/conftest.py before JAX starts. Two pytest workers: most
# of the suite's time is XLA compiling, one core each (measured on 2 cores: 16:34 -> 12:39).
# What CI runs; docs/testing.md says where the time goes.
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

# The inner loop: all but the tests marked slow (subprocesses, several processes, config smokes).
test-fast: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow" tests

clean:
	rm -rf $(VENV) .pytest_cache runs
