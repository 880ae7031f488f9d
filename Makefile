# Everyday commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 5000

.PHONY: install redis run demo worker invoke test lint format bench bench-overhead bench-split bench-jobs bench-logs bench-console clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,clients]'
	@rm -f $(VENV)/.installed-* && touch $@

# The pinned Kilo CLI the agent runner drives (agent_task/package.json, package-lock.json).
KILO_STAMP := agent_task/node_modules/.installed-$(shell cat agent_task/package.json agent_task/package-lock.json | cksum | cut -d' ' -f1)

$(KILO_STAMP): agent_task/package.json agent_task/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js >= 20) is needed for the Kilo CLI"; exit 1; }
	@echo "installing the Kilo CLI into agent_task/node_modules ..."
	@npm install --prefix agent_task --no-audit --no-fund --loglevel=error
	@rm -f agent_task/node_modules/.installed-* && touch $@

# The Node clients the test suite drives against /v1 (openai-node, the Vercel AI SDK, and the coding agents Claude
# Code and the Codex CLI, whose native binaries come as npm packages), pinned with a lock file.
CLIENTS_STAMP := tests/clients/node/node_modules/.installed-$(shell cat tests/clients/node/package.json tests/clients/node/package-lock.json | cksum | cut -d' ' -f1)

$(CLIENTS_STAMP): tests/clients/node/package.json tests/clients/node/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js >= 20) is needed for the Node client tests"; exit 1; }
	@echo "installing the Node test clients into tests/clients/node/node_modules ..."
	@npm ci --prefix tests/clients/node --no-audit --no-fund --loglevel=error
	@rm -f tests/clients/node/node_modules/.installed-* && touch $@

install: $(STAMP) $(KILO_STAMP) $(CLIENTS_STAMP)

redis: $(STAMP)
	@$(PY) scripts/ensure_redis.py

## the local server on 127.0.0.1:$(PORT), on its embedded defaults
run: install redis
	@PORT=$(PORT) $(PY) -m kilo_bridge serve

## a dedicated agent-job worker on the local queue (`make run` already runs one beside its web processes)
worker: install redis
	@$(PY) -m kilo_bridge worker

## the same server against the built-in fake Kilo Gateway: try every endpoint without a Kilo key
demo: install redis
	@PORT=$(PORT) scripts/demo.sh

## run a Lambda handler on an event without Docker: make invoke FN=dispatcher EVENT=events/dispatcher/sqs-run-agent.json
invoke: install redis
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<api|stream|dispatcher|finalizer|scheduled> EVENT=<file>"; exit 2; }
	@POWERTOOLS_TRACE_DISABLED=true $(PY) scripts/invoke.py $(FN) $(EVENT)

test: install redis lint
	@$(PY) -m pytest

## the quality gate `make test` runs first: lint, formatting, strict types, the layers of docs/architecture.md
lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy layers/kilo_bridge functions agent_task
	@$(VENV)/bin/pytest tests/unit/test_layers.py -q -p no:cacheprovider

format: install
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

## every benchmark, one after the other (~20 min): each writes its report into docs/
bench: bench-overhead bench-split bench-compare bench-coldstart bench-redis bench-jobs bench-sse bench-logs bench-console

## the latency Kilo Bridge adds over calling the (fake) gateway directly → docs/benchmarks.md
## (`BENCH_BASELINE=<git ref> make bench-overhead`: that commit served beside this checkout, before/after in one run)
bench-overhead: install redis
	@$(PY) tests/benchmarks/run.py

clean:
	rm -rf $(VENV) .run .aws-sam agent_task/node_modules

# Optional target groups (SAM deployment, comparison benchmarks).
-include mk/*.mk

## where one request's CPU goes (Redis, upstream, framework), and the two Redis clients → docs/benchmarks/split.md
bench-split: install redis
	@$(PY) tests/benchmarks/split.py

## agent jobs: run-agent acceptance rate and start latency (queue vs direct) → docs/benchmarks/jobs.md
bench-jobs: install redis
	@$(PY) tests/benchmarks/jobs.py

## job log line latency, written → shown on the stream → docs/benchmarks/logs.md
bench-logs: install redis
	@$(PY) tests/benchmarks/log_latency.py

## the console's first load in Chromium: bytes, requests, time to a rendered overview → docs/benchmarks/console.md
bench-console: install redis
	@$(PY) tests/benchmarks/console.py
