# Two commands on a fresh machine: `make demo` and `make test` (each installs first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m rastos.native
	touch $(STAMP)

demo: install
	$(BIN)/rastos demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/engine_speed.py
	$(BIN)/python bench/engine_scale.py --concurrency 300 --duration 60

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
