#!/bin/sh
# Offline smoke test of the `sam build` output (.aws-sam/build): every built Python handler imports with the
# built layer under python3.12 (Lambda's runtime), and the built StreamFunction's run.sh serves the app on
# loopback the way the Lambda Web Adapter reaches it. No AWS, no container engine.
set -eu
BUILD=${1:-.aws-sam/build}
test -d "$BUILD/KiloBridgeLayer/python" || { echo "no $BUILD: run make build first" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd)
PY312=$(${PYTHON312:-python3.12} -c 'import sys; print(sys.executable)')
TMP=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
# run.sh calls `python`: make that the 3.12 interpreter, as on Lambda.
ln -s "$PY312" "$TMP/python"
export PATH="$TMP:$PATH" PYTHONPATH="$BUILD/KiloBridgeLayer/python" PYTHONDONTWRITEBYTECODE=1
export AGENTS_DIR="$BUILD/KiloBridgeLayer/agent_task/agents" AWS_DEFAULT_REGION=us-east-1 POWERTOOLS_TRACE_DISABLED=1
# The deployed queue settings (template.yaml Globals); the queue URL is never contacted by this check.
export JOB_QUEUE=sqs AGENT_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/000000000000/kilo-bridge-smoke

for fn in ApiFunction DispatcherFunction FinalizerFunction ScheduledFunction; do
  if [ -f "$BUILD/$fn/app.py" ]; then
    (cd "$BUILD/$fn" && python -c 'import app; assert callable(app.handler)')
    echo "ok    $fn: app.handler imports under $(python -V)"
  else
    echo "skip  $fn: no app.py yet"
  fi
done

PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PORT=$PORT LAMBDA_TASK_ROOT="$BUILD/StreamFunction" sh "$BUILD/StreamFunction/run.sh" > "$TMP/stream.log" 2>&1 &
SERVER=$!
# 200 (Redis up) or 503 (Redis down) both prove the built function serves; anything else fails.
python - "$PORT" <<'PY' || { cat "$TMP/stream.log" >&2; exit 1; }
import sys, time, urllib.error, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/healthz"
deadline = time.monotonic() + 20
while True:
    try:
        status = urllib.request.urlopen(url, timeout=2).status  # noqa: S310 - loopback
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("StreamFunction did not start")
        time.sleep(0.2)
        continue
    print(f"ok    StreamFunction: run.sh serves GET /healthz -> {status}")
    sys.exit(0 if status in (200, 503) else 1)
PY
