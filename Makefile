# Model Arena: the one entry point. `make demo` and `make test` are the two that matter.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-env test lint install bench clean test-vllm test-cluster chromium

# What the demo needs; the test and bench tools come on top (ratings peers, datasets, ...).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[local]'
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[local,dev,bench]'
	@touch $(DEV_STAMP)

install: $(DEV_STAMP)

# The demo's settings go to .env (ARENA_DEMO=1, the data folder), which every `python manage.py`
# reads; a .env of your own (without this first line) is left alone. `exec`: a SIGTERM to make
# reaches run_arena, which stops everything.
ARENA_DATA_DIR ?= $(CURDIR)/data
DEMO_ENV_HEADER := \# Written by make demo; the environment wins over this file.
demo-env:
	@if [ ! -e .env ] || head -n 1 .env | grep -q '^$(DEMO_ENV_HEADER)'; then \
	  printf '%s\n' '$(DEMO_ENV_HEADER)' ARENA_DEMO=1 'ARENA_DATA_DIR=$(abspath $(ARENA_DATA_DIR))' > .env; \
	else echo "make demo: .env is not make's own; left as it is"; fi

demo: $(STAMP) demo-env
	ARENA_DEMO=1 $(PY) manage.py migrate --noinput
	ARENA_DEMO=1 $(PY) manage.py build_demo_models
	ARENA_DEMO=1 exec $(PY) manage.py run_arena --host $(HOST) --port $(PORT)

# The browser tests drive Debian's chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser tests need chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

test: $(DEV_STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	ARENA_DEMO=1 $(PY) manage.py makemigrations --check --dry-run
	ARENA_DEMO=1 $(PY) -m mypy  # the Django plugin imports the settings
	$(VENV)/bin/lint-imports  # the layers ([tool.importlinter] in pyproject.toml)
	$(PY) scripts/import_cycles.py  # no two modules import each other, tests and benchmarks included

# `make bench QUICK=1`: the web hot path's benchmarks only, small (about 5 minutes on 2 cores).
# Each prints its peer beside its figure (floors, direct to the model server, a static file).
bench: $(DEV_STAMP)
ifndef QUICK
	$(PY) benchmarks/ratings.py
	$(PY) benchmarks/coverage.py --arenas 800 --style-arenas 200
	$(PY) benchmarks/reading.py
	$(PY) benchmarks/export.py --votes 100000
	$(PY) benchmarks/battle_create.py
	$(PY) benchmarks/leaderboard.py --votes 1000000 --requests 2000
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/worker_cpu.py
else
	$(PY) benchmarks/battle_create.py --requests 100
	$(PY) benchmarks/leaderboard.py --votes 100000 --battles 200000 --requests 1000
	$(PY) benchmarks/overhead.py --levels 1,50 --single-rounds 20
	$(PY) benchmarks/worker_cpu.py --rounds 3 --single-rounds 5
endif

# Opt-in: a CPU build of vLLM in its own venv (about 3.5 GB), a tiny model served by it, and a
# battle through the arena against it.
test-vllm: $(DEV_STAMP)
	bash scripts/test_vllm.sh

# As root: the arena on eight test hosts (network namespaces on a private bridge) with PostgreSQL,
# Redis, two web hosts, two workers and two model servers, and faults between them; about 1.5
# minutes (docs/cluster-test.md). Whatever a killed run left behind is removed on the way out.
test-cluster: $(DEV_STAMP)
	@if [ "$$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then \
	  useradd --system --no-create-home postgres; fi
	trap '$(PY) -m tests.cluster.hosts clean' EXIT INT TERM; \
	  ARENA_CLUSTER=1 $(PY) -m pytest tests/cluster -W always::UserWarning

clean:
	rm -rf $(VENV) data var .env
