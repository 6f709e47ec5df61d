# The two quickstart commands: `make demo` and `make test`.
# Both create .venv and install idflow into it on first use (and again when
# pyproject.toml changes), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint install

demo: $(STAMP)
	$(VENV)/bin/idflow demo

test: lint
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Style is checked before the tests run (config in pyproject.toml);
# `ruff format . && ruff check --fix .` repairs most of what it finds.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)
