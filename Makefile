# The two quickstart commands: `make demo` and `make test`.
# Both create .venv and install idflow into it on first use (and again when
# pyproject.toml changes), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install

demo: $(STAMP)
	$(VENV)/bin/idflow demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)
