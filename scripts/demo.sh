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
# A local repository for agent jobs, and a scripted "model" that makes the real Kilo CLI write a file.
DEMO_REPO="$PWD/.run/demo-repo.git"
if [ ! -d "$DEMO_REPO" ]; then
  git init -q --bare -b main "$DEMO_REPO"
  tmp=$(mktemp -d)
  git -C "$tmp" init -q -b main
  printf '# Demo repository\n\nAgent jobs started by `make demo` run here.\n' > "$tmp/README.md"
  git -C "$tmp" add README.md
  git -C "$tmp" -c user.name=demo -c user.email=demo@example.com commit -q -m "demo repository"
  git -C "$tmp" push -q "$DEMO_REPO" HEAD:main
  rm -rf "$tmp"
fi
curl -s -o /dev/null "http://127.0.0.1:$FAKE_PORT/_fake/agent" -H 'Content-Type: application/json' -d \
  '{"plan": [{"tool": "write", "args": {"filePath": "HELLO.md", "content": "Hello from a Kilo agent.\n"}}],
    "text": "Added HELLO.md."}'
# Agent jobs run sandboxed (AGENT_SANDBOX=auto: bubblewrap). Where bubblewrap cannot run, the demo opts out
# for its own local repository only, and says so; an explicit AGENT_SANDBOX is kept as given.
if [ -z "${AGENT_SANDBOX:-}" ]; then
  why=$($PY -c 'import shutil; from agent_task.sandbox import bwrap_problem as p; b = shutil.which("bwrap")
print((p(b) if b else "bubblewrap is not installed") or "")')
  if [ -z "$why" ]; then
    echo "demo: agent jobs run in bubblewrap (AGENT_SANDBOX=auto); AGENT_SANDBOX=none make demo runs them unsandboxed"
  else
    export AGENT_SANDBOX=none
    echo "demo: $why"
    echo "demo: so agent jobs run UNSANDBOXED here (AGENT_SANDBOX=none), fit only for the demo's own repository"
  fi
else
  echo "demo: agent jobs run with AGENT_SANDBOX=$AGENT_SANDBOX"
fi
cat <<MSG
demo: fake Kilo Gateway on http://127.0.0.1:$FAKE_PORT (answers "Echo: <prompt>"; model fake/cut breaks a stream)
demo: try, in another terminal:
  curl -s localhost:${PORT:-5000}/api/kilo/generate -H 'Content-Type: application/json' -d '{"prompt": "hello"}'
  curl -sN localhost:${PORT:-5000}/api/kilo/generate-stream -H 'Content-Type: application/json' -d '{"prompt": "hello there"}'
  curl -s localhost:${PORT:-5000}/api/kilo/stats
  curl -s localhost:${PORT:-5000}/api/kilo/run-agent -H 'Content-Type: application/json' \
    -d '{"repoUrl": "$DEMO_REPO", "agent": "apply-patch-and-pr", "prompt": "Add a HELLO.md", "dryRun": true}'
  curl -s localhost:${PORT:-5000}/api/kilo/jobs          # then: curl -sN <logUrl> ; curl -s <statusUrl>
MSG
KILO_GATEWAY_BASE="http://127.0.0.1:$FAKE_PORT/api/gateway" \
KILO_API_KEY="${KILO_API_KEY:-demo-key-not-a-real-key}" \
REDIS_PREFIX="${REDIS_PREFIX:-kbdemo:}" \
REPO_ALLOW_LOCAL=true \
  $PY -m kilo_bridge serve
