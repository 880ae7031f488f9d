# Everyday commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 5000

.PHONY: install redis run demo worker test lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

redis: $(STAMP)
	@$(PY) scripts/ensure_redis.py

## the local server on 127.0.0.1:$(PORT), on its embedded defaults
run: install redis
	@PORT=$(PORT) $(PY) -m kilo_bridge serve

## the same server against the built-in fake Kilo Gateway: try every endpoint without a Kilo key
demo: install redis
	@PORT=$(PORT) scripts/demo.sh

test: install redis lint
	@$(PY) -m pytest

lint: install
	@$(VENV)/bin/ruff check .

format: install
	@$(VENV)/bin/ruff format layers functions agent_task tests scripts
	@$(VENV)/bin/ruff check --fix .

bench: install redis
	@$(PY) tests/benchmarks/run.py

clean:
	rm -rf $(VENV) .run .aws-sam

# Optional target groups (SAM deployment, comparison benchmarks).
-include mk/*.mk
