# streamsnn: `make demo` sets up and runs the default pipeline, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
# torch goes in before the package (whose `torch>=2.1` then needs nothing more), from where
# scripts/torch_index.py decides: TORCH_CPU_INDEX without an NVIDIA GPU, else pip's default index.
# Another version: `make setup TORCH=torch==2.5.1`; the default index everywhere: `TORCH_CPU_INDEX=`.
TORCH  ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: setup demo test lint train bench clean

# Sinabs (tests/interop: NIR round trips) without its dependencies: its pins pull another nir and
# samna (its chip tools); it needs only torch, numpy, nir and nirtorch, installed before it, and pbr
# for its version.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "setup: installing $(TORCH) into $(VENV) (the CPU build: a 190 MB wheel; a CUDA build: several GB)"
	opts=$$($(BIN)/python scripts/torch_index.py "$(TORCH_CPU_INDEX)") && \
		$(PIP) install $(FIND_LINKS) $$opts "$(TORCH)"
	@echo "setup: installing streamsnn (editable) with its dependencies and the dev tools into $(VENV)"
	$(PIP) install $(FIND_LINKS) -e ".[dev]"
	@echo "setup: installing Sinabs (without its dependencies) for the NIR round-trip tests"
	$(PIP) install $(FIND_LINKS) --no-deps sinabs==3.1.3 pbr
	touch $@

demo: setup
	$(BIN)/streamsnn run pipelines/digits_dvs.yaml

test: setup
	$(BIN)/ruff check streamsnn tests benchmarks examples scripts
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check streamsnn tests benchmarks examples scripts
	$(BIN)/ruff format --check streamsnn tests benchmarks examples scripts

# Retrains the shipped digits models into runs/train/ and compares each with the shipped one
# (streamsnn/assets/ is never written).
train: setup
	$(BIN)/streamsnn train configs/digits_dvs.yaml
	$(BIN)/streamsnn train configs/digits_frames.yaml
	$(BIN)/streamsnn train configs/digits_frames_2bit.yaml

# The inference benchmark against SpikingJelly and snnTorch: both installed here for it only (not
# dependencies). SpikingJelly without its dependencies, which would pull a CUDA torch.
bench: setup
	@echo "bench: installing SpikingJelly and snnTorch into $(VENV), for the benchmark only"
	$(PIP) install $(FIND_LINKS) --no-deps spikingjelly==2.0.0 loguru
	$(PIP) install $(FIND_LINKS) snntorch==1.0.0
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf $(VENV) runs .pytest_cache
