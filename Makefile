# One entry point for people and CI. `make run` serves the app; `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup run test test-backend lint ferretdb

help:
	@echo "make run     - start the backend (local FerretDB under ./var when MONGO_URL is unset)"
	@echo "make test    - install what is missing, then run the whole test suite"
	@echo "make lint    - ruff and mypy"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)

ferretdb: $(STAMP)
	$(BIN)/python -c "from backend.devtools.ferretdb import ensure_built; ensure_built()"

run: setup ferretdb
	$(BIN)/python -m backend

test-backend: setup ferretdb
	$(BIN)/python -m pytest

test: test-backend

lint: setup
	$(BIN)/ruff check backend tests scripts bench
	$(BIN)/mypy
