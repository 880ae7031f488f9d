# Everyday commands. Each installs what it needs first: `make run` what serving needs (the runtime, the server,
# the pinned Kilo CLI, bubblewrap and socat), `make test` the whole tool-chain besides (test libraries, the Node
# test clients, Chromium). System packages are installed with apt when we are root, else named with the command.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PINS   := $(shell cat pyproject.toml layers/requirements.txt requirements/test.lock | cksum | cut -d' ' -f1)
SERVE_STAMP := $(VENV)/.installed-serve-$(PINS)
STAMP  := $(VENV)/.installed-dev-$(PINS)
PORT   ?= 5000
# The agent's OS sandbox (bubblewrap) and what its network sandbox relays through (socat); Chromium drives the
# console's browser tests (Playwright's own browser download cannot work here).
SERVE_PACKAGES := bubblewrap socat
TEST_PACKAGES  := $(SERVE_PACKAGES) chromium

.PHONY: install install-serve system-packages-serve system-packages-test redis run demo worker invoke test unit lint format bench bench-overhead bench-split bench-jobs bench-logs bench-console clean

define venv
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
endef

# serving: the runtime pins and the server extra only
$(SERVE_STAMP): pyproject.toml layers/requirements.txt
	$(venv)
	@echo "installing the server into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r layers/requirements.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-serve-* && touch $@

# the test tool-chain on top (pytest, moto, playwright, mypy, ruff, the Python clients the tests drive)
$(STAMP): $(SERVE_STAMP) requirements/test.lock
	@echo "installing the test tool-chain into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements/test.lock
	@rm -f $(VENV)/.installed-dev-* && touch $@

system-packages-serve:
	@scripts/system_packages.sh --warn $(SERVE_PACKAGES)

system-packages-test:
	@scripts/system_packages.sh $(TEST_PACKAGES)

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

## what serving needs: `make run`, `make demo`, `make worker` install only this
install-serve: $(SERVE_STAMP) $(KILO_STAMP) system-packages-serve

## everything: serving and the test tool-chain (what `make test` installs)
# The three downloads on top of serving (Python test libraries, Node test clients, Chromium) share nothing: they
# run side by side, each one's output kept together.
install: install-serve
	@$(MAKE) --no-print-directory -j3 --output-sync=target $(STAMP) $(CLIENTS_STAMP) system-packages-test

redis: $(SERVE_STAMP)
	@$(PY) scripts/ensure_redis.py

## the local server on 127.0.0.1:$(PORT), on its embedded defaults
run: install-serve redis
	@PORT=$(PORT) $(PY) -m kilo_bridge serve

## a dedicated agent-job worker on the local queue (`make run` already runs one beside its web processes)
worker: install-serve redis
	@$(PY) -m kilo_bridge worker

## the same server against the built-in fake Kilo Gateway: try every endpoint without a Kilo key
demo: install-serve redis
	@PORT=$(PORT) scripts/demo.sh

## run a Lambda handler on an event without Docker: make invoke FN=dispatcher EVENT=events/dispatcher/sqs-run-agent.json
invoke: install redis
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<api|stream|dispatcher|finalizer|scheduled> EVENT=<file>"; exit 2; }
	@POWERTOOLS_TRACE_DISABLED=true $(PY) scripts/invoke.py $(FN) $(EVENT)

# Two workers, each given whole files (a module's fixtures stay on one worker; tests share nothing but Redis, each
# under its own prefix): the suite mostly waits on processes (the Kilo CLI, git, Chromium), so two workers take
# half the time even on two cores. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: install redis lint
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

## the inner loop: the unit tier alone (pure logic, no Redis, no servers; seconds)
unit: install
	@$(PY) -m pytest tests/unit -q

## the quality gate `make test` runs first: lint, formatting, strict types, the layers of docs/architecture.md
lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy layers/kilo_bridge functions agent_task tests scripts
	@$(VENV)/bin/pytest tests/unit/test_layers.py -q

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
