#!/usr/bin/env bash
# `make demo`: the local server in front of the built-in fake Kilo Gateway (no Kilo key needed) and a fake GitHub
# on loopback (git over HTTP and the pull request API), so an agent job goes all the way to a pull request, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN=${DEMO_DIR:-.run}
mkdir -p "$RUN"
FAKE_PORT=${FAKE_PORT:-8931}
GITHUB_PORT=${GITHUB_PORT:-8932}
PORT=${PORT:-5000}
DEMO_TOKEN=demo-github-token-not-real
$PY tests/fakes/fake_gateway.py --port "$FAKE_PORT" --always-usage > "$RUN/fake-gateway.log" 2>&1 &
fake=$!
$PY -m tests.fakes.fake_github --root "$RUN/demo-github" --port "$GITHUB_PORT" --token "$DEMO_TOKEN" \
  > "$RUN/fake-github.log" 2>&1 &
github=$!
trap 'kill $fake $github 2>/dev/null' EXIT
for log in "$RUN/fake-gateway.log" "$RUN/fake-github.log"; do
  for _ in $(seq 100); do grep -q listening "$log" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$log" || { echo "demo: a fake did not start:"; cat "$log"; exit 1; }
done
DEMO_REPO="http://127.0.0.1:$GITHUB_PORT/demo/widgets.git"
# A scripted "model": the real Kilo CLI, run by the job, writes a file in the checkout.
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
B="http://127.0.0.1:$PORT"
cat <<MSG
demo: fake Kilo Gateway on http://127.0.0.1:$FAKE_PORT (answers "Echo: <prompt>"; model fake/cut breaks a stream)
demo: fake GitHub on http://127.0.0.1:$GITHUB_PORT with the repository $DEMO_REPO (token $DEMO_TOKEN)
demo: the console: $B/
demo: try, in another terminal:
  curl -s $B/api/kilo/generate -H 'Content-Type: application/json' -d '{"prompt": "hello"}'
  curl -sN $B/api/kilo/generate-stream -H 'Content-Type: application/json' -d '{"prompt": "hello there"}'
  # an agent job that opens a pull request on the fake GitHub:
  curl -s $B/api/kilo/run-agent -H 'Content-Type: application/json' -d '{"repoUrl": "$DEMO_REPO", "agent": "apply-patch-and-pr", "prompt": "Add a HELLO.md", "profileEnv": {"GITHUB_TOKEN": "$DEMO_TOKEN"}}'
  curl -sN $B/api/kilo/job/JOB_ID/logs                      # its live log, until it ends
  curl -s $B/api/kilo/job/JOB_ID                            # status, outcome, result.prUrl
  curl -s -X DELETE $B/api/kilo/job/JOB_ID                  # cancel it
  curl -s $B/api/kilo/job/JOB_ID/artifacts/diff.patch       # its diff (also log.jsonl, result.json)
  curl -s http://127.0.0.1:$GITHUB_PORT/api/v3/repos/demo/widgets/pulls   # the pull requests opened
  .venv/bin/kilo-bridge jobs show JOB_ID --url $B          # the same from the terminal client
MSG
KILO_GATEWAY_BASE="http://127.0.0.1:$FAKE_PORT/api/gateway" \
KILO_API_KEY="${KILO_API_KEY:-demo-key-not-a-real-key}" \
REDIS_PREFIX="${REDIS_PREFIX:-kbdemo:}" \
GITHUB_API_URL="http://127.0.0.1:$GITHUB_PORT/api/v3" \
REPO_ALLOW_LOCAL=true \
PORT=$PORT \
  $PY -m kilo_bridge serve
