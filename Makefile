# Two entry points, each one command on a fresh machine with Python 3.11:
#   make run    set up, train on ml-latest-small if no bundle exists, then serve on port 8000
#   make test   set up, lint, and run the test suite
# Data: MOVIELENS_DIR (a folder or .zip) if set, else the official archive is downloaded once.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
export MODEL_DIR HOST PORT

.PHONY: run train serve test lint bench clean planted-bugs mutation

run: train serve

train: $(VENV)/.installed-training
	$(BIN)/python -m training --if-missing

serve: $(VENV)/.installed-training
	$(BIN)/python -m app

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Each bug of tests/planted.py planted in a copy of the project: CAUGHT or SURVIVED (README, Testing).
planted-bugs: $(VENV)/.installed-dev
	$(BIN)/python -m tests.planted

# mutmut over the core modules ([tool.mutmut] in pyproject.toml); results in mutants/ (git-ignored).
mutation: $(VENV)/.installed-dev
	$(BIN)/mutmut run
	$(BIN)/mutmut results

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.load

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
