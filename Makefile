# The two commands of the README: `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8080
# More options for `vpngw serve`, e.g. make run SERVE_ARGS="--no-dataplane --db postgresql+psycopg://..."
SERVE_ARGS ?=

.PHONY: run test check screenshots system-packages bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.runtime: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## run: install vpngw in a virtualenv and serve the API on the embedded SQLite database.
run: $(VENV)/.runtime
	$(VENV)/bin/vpngw serve --host $(HOST) --port $(PORT) --credentials-file .vpngw/credentials.json $(SERVE_ARGS)

## test: install what the tests need (PostgreSQL included) and run the whole suite.
test: $(VENV)/.test system-packages
	$(PY) -m pytest

## check: lint (ruff), format check (ruff format) and types (mypy, strict) on what ships and its tests.
check: $(VENV)/.test
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

## screenshots: run the console tests and write their screenshots into docs/console/ (commit when a page changed).
screenshots: $(VENV)/.test system-packages
	VPNGW_CONSOLE_SHOTS=$(CURDIR)/docs/console $(PY) -m pytest tests/console -q

system-packages:
	bash scripts/install-system-packages.sh

bench: $(VENV)/.test
	$(PY) bench/api_bench.py

clean:
	rm -rf $(VENV) *.egg-info src/*.egg-info .pytest_cache .hypothesis
