# The two entry points the README opens with: `make run` and `make test`.
# Everything else is a step they share. Artifacts go to $(DATA_DIR), outside the source tree.
SHELL := /bin/bash
PYTHON_BOOT ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= data
MODEL_DIR ?= $(DATA_DIR)/models/splade-tiny
CORPUS ?= $(DATA_DIR)/corpora/python-docs.jsonl
INDEX_DIR ?= $(DATA_DIR)/indexes/python-docs
PYTEST_ARGS ?=
# Two pytest-xdist workers (CI has 2 cores), a test module per work unit; tests/conftest.py makes the modules that
# share a costly session fixture one unit and hands those out first.
TEST_WORKERS ?= 2

.PHONY: run test install model demo-index serve bench clean

run: install model demo-index serve

test: install model
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[export,eval,dev,ray]'
	touch $@

model: install
	$(PY) -m models fetch-default --out $(MODEL_DIR)

demo-index: install model
	$(PY) -m index_builder.demo_corpus --out $(CORPUS)
	$(PY) -m index_builder build --model $(MODEL_DIR) --corpus $(CORPUS) --out $(INDEX_DIR)

serve: install
	SPLADE_MODEL_DIR=$(MODEL_DIR) SPLADE_INDEX_DIR=$(INDEX_DIR) $(PY) -m service

bench: install model
	$(PY) bench/encode.py
	$(PY) bench/index.py
	$(PY) bench/service.py

clean:
	rm -rf $(VENV) $(DATA_DIR)
