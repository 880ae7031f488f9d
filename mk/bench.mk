# Comparison benchmarks (Kilo Bridge vs LiteLLM proxy vs Portkey gateway), Lambda cold-import times, Redis commands per
# request and the SSE response (EventStream vs StreamingResponse).
# Third-party systems and plotting install under .bench/ (gitignored), once per set of pins, never into .venv.
BENCH_DIR      := .bench
BENCH_PYTHON   ?= python3.11
LITELLM_PIN    := litellm[proxy]==1.108.7
PORTKEY_PIN    := @portkey-ai/gateway@1.15.2
# Portkey 1.15.2 with a newer @hono/node-server answers every stream with 500 (TypeError: immutable).
HONO_NODE_PIN  := 1.13.8
MATPLOTLIB_PIN := matplotlib==3.9.2
# reference row of bench-coldstart: a FastAPI + Mangum hello world (mangum as the project pins it)
REF_PINS       := fastapi==0.163.2 mangum==0.22.0
BENCH_PINS     := $(shell echo '$(LITELLM_PIN) $(PORTKEY_PIN) $(HONO_NODE_PIN)' | cksum | cut -d' ' -f1)
BENCH_STAMP    := $(BENCH_DIR)/.installed-compare-$(BENCH_PINS)
PLOT_STAMP     := $(BENCH_DIR)/.installed-plot-$(shell echo '$(MATPLOTLIB_PIN)' | cksum | cut -d' ' -f1)
REF_STAMP      := $(BENCH_DIR)/.installed-ref-$(shell echo '$(REF_PINS)' | cksum | cut -d' ' -f1)

.PHONY: bench-tools bench-compare bench-coldstart bench-redis bench-sse bench-stack bench-gap bench-admission bench-reconcile

$(PLOT_STAMP):
	@mkdir -p $(BENCH_DIR)
	@test -x $(BENCH_DIR)/plot-venv/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_DIR)/plot-venv
	@echo "installing $(MATPLOTLIB_PIN) into $(BENCH_DIR)/plot-venv ..."
	@$(BENCH_DIR)/plot-venv/bin/pip install -q --disable-pip-version-check '$(MATPLOTLIB_PIN)'
	@rm -f $(BENCH_DIR)/.installed-plot-* && touch $@

$(REF_STAMP):
	@mkdir -p $(BENCH_DIR)
	@test -x $(BENCH_DIR)/ref-venv/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_DIR)/ref-venv
	@echo "installing $(REF_PINS) into $(BENCH_DIR)/ref-venv ..."
	@$(BENCH_DIR)/ref-venv/bin/pip install -q --disable-pip-version-check $(foreach p,$(REF_PINS),'$(p)')
	@rm -f $(BENCH_DIR)/.installed-ref-* && touch $@

$(BENCH_STAMP):
	@mkdir -p $(BENCH_DIR)/portkey
	@test -x $(BENCH_DIR)/litellm-venv/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_DIR)/litellm-venv
	@echo "installing $(LITELLM_PIN) into $(BENCH_DIR)/litellm-venv ..."
	@$(BENCH_DIR)/litellm-venv/bin/pip install -q --disable-pip-version-check '$(LITELLM_PIN)'
	@echo "installing $(PORTKEY_PIN) into $(BENCH_DIR)/portkey ..."
	@printf '{"name": "kilo-bridge-bench-portkey", "private": true, "overrides": {"@hono/node-server": "%s"}}\n' \
		'$(HONO_NODE_PIN)' > $(BENCH_DIR)/portkey/package.json
	@# --ignore-scripts: its only install script is patch-package, and the package ships no patches
	@cd $(BENCH_DIR)/portkey && npm install --no-audit --no-fund --ignore-scripts --save-exact '$(PORTKEY_PIN)'
	@rm -f $(BENCH_DIR)/.installed-compare-* && touch $@

bench-tools: $(BENCH_STAMP) $(PLOT_STAMP)

## Kilo Bridge, LiteLLM proxy and Portkey gateway side by side on one fake upstream → docs/benchmarks/compare.md
bench-compare: install redis bench-tools
	@BENCH_PLOT_PYTHON=$(BENCH_DIR)/plot-venv/bin/python $(PY) tests/benchmarks/compare.py

## cold import time of every Lambda entry point, and of a FastAPI + Mangum reference → docs/benchmarks/coldstart.md
bench-coldstart: install redis $(PLOT_STAMP) $(REF_STAMP)
	@BENCH_PLOT_PYTHON=$(BENCH_DIR)/plot-venv/bin/python BENCH_REF_PYTHON=$(BENCH_DIR)/ref-venv/bin/python \
		$(PY) tests/benchmarks/coldstart.py

## admission and settlement cost (budget periods, model lists, teams, rate limits) against BENCH_BASELINE (main)
## in one run, on a redis-server of its own → docs/benchmarks/admission.md
bench-admission: install
	@$(PY) tests/benchmarks/admission.py

## Redis commands per request of each route, from INFO commandstats → docs/benchmarks/redis.md
bench-redis: install redis
	@$(PY) tests/benchmarks/redis_trips.py

## our EventStream against Starlette's StreamingResponse on the relay path (uvicorn on loopback) → docs/benchmarks/sse.md
bench-sse: install
	@$(PY) tests/benchmarks/sse.py

## the HTTP server (uvicorn vs granian) and upstream client (aiohttp vs rnet, pyreqwest) → docs/benchmarks/stack.md
STACK_PINS := granian==2.8.9 rnet==2.4.2 pyreqwest==0.15.1
STACK_STAMP := $(BENCH_DIR)/.installed-stack-$(shell echo '$(STACK_PINS)' | cksum | cut -d' ' -f1)

$(STACK_STAMP):
	@mkdir -p $(BENCH_DIR)
	@echo "installing $(STACK_PINS) into $(BENCH_DIR)/stack-pkgs ..."
	@$(PY) -m pip install -q --disable-pip-version-check --target $(BENCH_DIR)/stack-pkgs $(foreach p,$(STACK_PINS),'$(p)')
	@rm -f $(BENCH_DIR)/.installed-stack-* && touch $@

bench-stack: install redis $(STACK_STAMP)
	@$(PY) tests/benchmarks/stack.py

## a do-nothing relay in front of a 0 ms and a 50 ms upstream: the idle wake-up cost → docs/benchmarks/upstream-gap.md
bench-gap: install
	@$(PY) tests/benchmarks/upstream_gap.py

## every call the (counting fake) upstream billed is in the ledger under faults (Redis paused, killed and restarted;
## a web process killed; clients hanging up), and no reservation stays open → docs/benchmarks/reconcile.md
## (RECONCILE_REQUESTS, RECONCILE_CLIENTS: at most that many calls, for as long as the faults last, ~15 s)
RECONCILE_REQUESTS ?= 2000
RECONCILE_CLIENTS  ?= 16
bench-reconcile: install
	@$(PY) tests/benchmarks/reconcile.py --requests $(RECONCILE_REQUESTS) --clients $(RECONCILE_CLIENTS)
