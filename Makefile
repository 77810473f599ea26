# Model Arena: the one entry point. `make demo` and `make test` are the two that matter.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint install bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[local,dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	ARENA_DEMO=1 $(PY) manage.py migrate --noinput
	ARENA_DEMO=1 $(PY) manage.py build_demo_models
	ARENA_DEMO=1 $(PY) manage.py run_arena --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	ARENA_DEMO=1 $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) benchmarks/ratings.py

clean:
	rm -rf $(VENV) data var
