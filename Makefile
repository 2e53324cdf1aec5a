# deploybench — the two commands a newcomer needs:
#   make bench-cpu   export the model and run every CPU framework on it, one result JSON per cell
#   make test        the test suite (real torch and ONNX Runtime, no mocks)
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
MODEL ?= resnet50
BATCH ?= 1
FRAMEWORKS ?= torch onnxruntime
ARTIFACTS ?= artifacts
RUN_ID ?= local-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: install bench-cpu test lint format clean

install: $(VENV)/.installed

# Re-installs when pyproject.toml changes. pip takes torch from PyPI's default (CUDA) wheels,
# which run on CPU; PIP_FIND_LINKS / PIP_CERT from the environment are honoured.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[torch,ort,ov,tvm,dev]'
	touch $@

bench-cpu: install
	$(PYTHON) -m bench export --model $(MODEL) --artifacts $(ARTIFACTS)
	for fw in $(FRAMEWORKS); do \
	  $(PYTHON) -m bench run --model $(MODEL) --framework $$fw --batch $(BATCH) \
	    --artifacts $(ARTIFACTS) --run-id $(RUN_ID) --out results/$(RUN_ID)/$(MODEL)-$$fw-b$(BATCH).json || exit 1; \
	done

test: install
	$(PYTHON) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(ARTIFACTS) results/local-* .pytest_cache .ruff_cache
