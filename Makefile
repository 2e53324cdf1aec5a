# deploybench — the two commands a newcomer needs:
#   make bench-cpu   build the images, export the models, run the CPU matrix in containers, print the table
#   make test        the test suite (real frameworks, a real Docker engine; nothing mocked)
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
MATRIX ?= quick
# auto: containers when a Docker engine answers, else the local executor, said before anything
# runs and recorded in the run (README: "Where cells run"). docker: containers or a clear error.
EXECUTOR ?= auto
# HOSTS=hosts.yaml: run the matrix across the engines of that inventory (runner/hosts.py; README
# "A pool of Docker hosts") instead of this machine's alone.
HOSTS ?=
RUN_ARGS ?=
DEFAULT_BASE := python:3.11-slim-bookworm
OFFLINE_BASE := deploybench/base:bookworm
# The registry base when the engine has it (or can pull it), else the offline Debian base.
BASE_IMAGE ?= $(shell docker image inspect $(DEFAULT_BASE) >/dev/null 2>&1 && echo $(DEFAULT_BASE) || echo $(OFFLINE_BASE))
# PyTorch's CPU wheel index when reachable; empty means PyPI's default (CUDA) wheels.
TORCH_INDEX_URL ?= $(shell curl -fsI --max-time 5 https://download.pytorch.org/whl/cpu/ >/dev/null 2>&1 && echo https://download.pytorch.org/whl/cpu)
BUILD_ARGS = --base-image "$(BASE_IMAGE)" --torch-index-url "$(TORCH_INDEX_URL)"

.PHONY: install bench-cpu bench-gpu bench-local images images-cpu images-gpu base base-offline \
        doctor engine engine-base report test lint format clean

install: $(VENV)/.installed

# Re-installs when pyproject.toml changes. pip takes torch from PyPI's default (CUDA) wheels,
# which run on CPU; PIP_FIND_LINKS / PIP_CERT from the environment are honoured.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[torch,ort,ov,tvm,runner,dev]'
	touch $@

# HOSTS=hosts.yaml: every engine of that inventory (runner/hosts.py) instead of the local one.
doctor: install
	$(PYTHON) -m runner doctor $(if $(HOSTS),--hosts $(HOSTS))

# A base image: the registry's if it can be pulled, else bootstrapped from Debian packages.
base: doctor
	@docker image inspect $(DEFAULT_BASE) >/dev/null 2>&1 \
	  || docker pull $(DEFAULT_BASE) >/dev/null 2>&1 \
	  || docker image inspect $(OFFLINE_BASE) >/dev/null 2>&1 \
	  || $(MAKE) base-offline

base-offline:
	images/bootstrap-base.sh $(OFFLINE_BASE)

images: images-cpu images-gpu

images-cpu: base
	$(PYTHON) -m runner images $(BUILD_ARGS)

images-gpu: base
	$(PYTHON) -m runner images --gpu $(BUILD_ARGS)

# Install and start Docker's engine (root on Debian/Ubuntu), for the containerized matrix.
engine:
	images/start-engine.sh

# The base image only where cells will run in containers: EXECUTOR=docker, or auto with an engine.
engine-base:
	@if [ "$(EXECUTOR)" = docker ] || { [ "$(EXECUTOR)" = auto ] && docker info >/dev/null 2>&1; }; \
	then $(MAKE) --no-print-directory base; fi

HOSTS_ARGS = $(if $(HOSTS),--hosts $(HOSTS),--executor $(EXECUTOR))

bench-cpu: install engine-base
	$(PYTHON) -m runner run --matrix $(MATRIX) $(HOSTS_ARGS) $(BUILD_ARGS) $(RUN_ARGS)

bench-gpu: install engine-base
	$(PYTHON) -m runner run --matrix gpu $(HOSTS_ARGS) $(BUILD_ARGS) $(RUN_ARGS)

# The same matrix without Docker, in this virtual environment.
bench-local: install
	$(PYTHON) -m runner run --matrix $(MATRIX) --executor local $(RUN_ARGS)

# The report of the latest run (or RUN=results/<run-id>; several: RUN="a b").
report: install
	$(PYTHON) -m runner report $(RUN)

test: install
	$(PYTHON) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Orphan containers of interrupted runs, build-stage images, artifacts and caches.
clean:
	-$(PYTHON) -m runner clean $(if $(HOSTS),--hosts $(HOSTS))
	-docker image prune --force --filter label=ai.deploybench.stage=build
	rm -rf artifacts cache .pytest_cache .ruff_cache
