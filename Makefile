# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH := torch==2.13.0
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Parsl finds interchange.py and its workers through PATH.
RUN := PATH="$(BIN):$$PATH"

.PHONY: demo test bench lint venv clean

venv: $(STAMP)

# torch first, pinned: the local CPU wheel. An unpinned torch, or gpytorch installed
# before torch, pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(RUN) $(BIN)/campaign demo --out runs/demo

# Headless Chromium for tests/test_report.py and MPICH for tests/test_mpi.py, installed when
# missing (apt, as root), like Slurm for tests/test_slurm.py; without them those tests skip
# and say why.
test: $(STAMP)
	@command -v chromium >/dev/null || [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null \
		|| { export DEBIAN_FRONTEND=noninteractive; \
		     apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 \
		          && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
		     || echo "chromium could not be installed: the browser tests will skip"; }
	@command -v mpicc >/dev/null || [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null \
		|| { export DEBIAN_FRONTEND=noninteractive; \
		     apt-get install -y -qq --no-install-recommends mpich libmpich-dev >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 \
		          && apt-get install -y -qq --no-install-recommends mpich libmpich-dev \
		             >/dev/null 2>&1; } \
		     || echo "MPICH could not be installed: the MPI tests will skip"; }
	$(RUN) $(BIN)/python -m pytest -q --durations=25

bench: $(STAMP)
	mkdir -p runs/bench
	$(RUN) $(BIN)/python -m benchmarks.sample_efficiency --json runs/bench/sample_efficiency.json

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf runs .pytest_cache
