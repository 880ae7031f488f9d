#!/usr/bin/env bash
# `make demo`: the local server in front of the built-in fake Kilo Gateway (no Kilo key needed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p .run
FAKE_PORT=${FAKE_PORT:-8931}
$PY tests/fakes/fake_gateway.py --port "$FAKE_PORT" --always-usage > .run/fake-gateway.log 2>&1 &
fake=$!
trap 'kill $fake 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q listening .run/fake-gateway.log 2>/dev/null && break; sleep 0.1; done
cat <<MSG
demo: fake Kilo Gateway on http://127.0.0.1:$FAKE_PORT (answers "Echo: <prompt>"; model fake/cut breaks a stream)
demo: try, in another terminal:
  curl -s localhost:${PORT:-5000}/api/kilo/generate -H 'Content-Type: application/json' -d '{"prompt": "hello"}'
  curl -sN localhost:${PORT:-5000}/api/kilo/generate-stream -H 'Content-Type: application/json' -d '{"prompt": "hello there"}'
  curl -s localhost:${PORT:-5000}/api/kilo/stats
MSG
KILO_GATEWAY_BASE="http://127.0.0.1:$FAKE_PORT/api/gateway" \
KILO_API_KEY="${KILO_API_KEY:-demo-key-not-a-real-key}" \
REDIS_PREFIX="${REDIS_PREFIX:-kbdemo:}" \
  $PY -m kilo_bridge serve
