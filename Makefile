# flossrun — set-up, tests, runs and figures. `make run` and `make test` set everything up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SCALE  ?= quick
STAMP  := $(VENV)/.installed

.PHONY: help install run test test-slow test-all lint format bench figures clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install flossrun with its dev tools

run: $(STAMP)  ## run the default experiment (delayed XOR d=20, N=80, k=75, pre+during flossing)
	$(BIN)/flossrun

test: $(STAMP)  ## the fast test suite (what CI runs), one worker per core
	$(BIN)/pytest -q -n auto

test-slow: $(STAMP)  ## only the tests marked slow (CI runs them after make test)
	$(BIN)/pytest -q -n auto -m slow

test-all: $(STAMP)  ## every test, the slow ones too
	$(BIN)/pytest -q -n auto -m ''

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: $(STAMP)  ## speed and memory against a reference loop (scripts/bench.py)
	$(BIN)/python scripts/bench.py

figures: $(STAMP)  ## run every preset (finished runs are skipped) and draw every figure; SCALE=quick|medium|paper
	$(BIN)/python scripts/make_figures.py --scale $(SCALE)

clean:  ## remove the virtual environment and caches (keeps outputs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
