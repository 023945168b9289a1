# streamsnn: `make demo` sets up and runs the default pipeline, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
# CPU machines: the CPU build of torch, installed before the package so that its `torch>=2.1`
# needs nothing more. GPU machines: `make setup TORCH=torch` (or any CUDA build of torch).
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: setup demo test lint train bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(FIND_LINKS) "$(TORCH)"
	$(PIP) install --quiet $(FIND_LINKS) -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/streamsnn run pipelines/digits_dvs.yaml

test: setup
	$(BIN)/ruff check streamsnn tests benchmarks examples
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check streamsnn tests benchmarks examples
	$(BIN)/ruff format --check streamsnn tests benchmarks examples

# Retrains the shipped digits models into runs/train/ and compares each with the shipped one
# (streamsnn/assets/ is never written).
train: setup
	$(BIN)/streamsnn train configs/digits_dvs.yaml
	$(BIN)/streamsnn train configs/digits_frames.yaml
	$(BIN)/streamsnn train configs/digits_frames_2bit.yaml

# The inference benchmark against SpikingJelly and snnTorch: both installed here for it only (not
# dependencies). SpikingJelly without its dependencies, which would pull a CUDA torch.
bench: setup
	$(PIP) install --quiet $(FIND_LINKS) --no-deps spikingjelly==2.0.0 loguru
	$(PIP) install --quiet $(FIND_LINKS) snntorch==1.0.0
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf $(VENV) runs .pytest_cache
