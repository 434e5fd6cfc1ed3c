# The README's two commands: `make demo` (set up + run the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= cpu-small

.PHONY: setup llamacpp demo test lint serve ui

# torch is installed first and pinned: any other spec pulls a multi-GB CUDA build.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

# the optional llama.cpp backend (tests exercise it): compiled from source once, ~5 minutes on 2 cores
$(BIN)/.llamacpp: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,llamacpp]"
	touch $@

llamacpp: $(BIN)/.llamacpp

# the main job: data + index + the shipped model (or train one) -> narratives for three real customers
demo: setup
	$(BIN)/recnarr demo --preset $(PRESET)

serve: setup
	$(BIN)/recnarr serve --preset $(PRESET)

ui: setup
	$(BIN)/recnarr demo-ui --preset $(PRESET)

lint: setup
	$(BIN)/ruff check src tests bench

test: setup llamacpp lint
	$(BIN)/python -m pytest -q
