# Two entry points (README): `make workflow` sets up and runs the embedded default;
# `make test` sets up and runs the tests. `make setup` alone builds .venv.
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of torch; on a GPU machine: make setup TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH  ?= torch==2.13.0
MUP    ?= mup==1.0.0
CORES  ?= 2
BIN    := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup workflow showcase interventions test test-fast lint bench gpu-check rehearsal clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[workflow,test,hf,lightning,tracking]'
	# mup declares torchvision, whose PyPI build breaks beside the CPU torch (and transformers'
	# imports); mup itself needs only torch.
	$(BIN)/python -m pip install -q --no-deps $(MUP)
	touch $@

workflow: setup
	$(BIN)/snakemake --cores $(CORES)

# the embedded default measured on wider windows and larger B' (config/showcase.yaml): runs/showcase/
showcase: setup
	time $(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml config/showcase.yaml

# the intervention study (Sec. 6-7: optimizer, schedule, initialisation), with LNP per layer: runs/interventions/
interventions: setup
	time $(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml config/interventions.yaml

test: setup
	$(BIN)/python -m pytest

# everyday work: the tests that do not run the workflow or train for long
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow

bench: setup
	$(BIN)/python benchmarks/lnp_cost.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/job_startup.py
	$(BIN)/python benchmarks/lnp_tied_mlm.py
	$(BIN)/python benchmarks/integration_overhead.py

# one prepared check of the GPU path on a machine with one GPU (~8 min): report in gpu_check.md
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --out gpu_check.md

# the paper study's whole DAG, shrunk, through a local SLURM with faults (root; runs/rehearsal/rehearsal.md)
rehearsal: setup
	$(BIN)/python benchmarks/rehearsal.py

clean:
	rm -rf runs results figures logs .snakemake report.html report.zip
