"""A stand-in for the Kilo CLI, for the runner's process-control cases (the real CLI is used where its
integration is what is tested). Prints `--format json` events like `kilo run`; what it does is chosen by
FAKE_KILO_MODE in its environment (the job's profileEnv reaches it). `kilo agent list` prints the agents of
KILO_CONFIG_DIR with their front matter's permissions as rules, in the real CLI's format (and notes each
listing in FAKE_KILO_LIST_LOG when set).


  write   write FAKE_KILO_FILE (default CHANGE.md), exit 0        fail   an error event, exit 3
  sleep   start a child `sleep`, record both pids in FAKE_KILO_PIDS, then sleep (timeout/cancel cases)
  steps   FAKE_KILO_STEPS steps, each one model call through the provider the runner configured (the bridge's
          `/v1` on the job's key, as the real CLI makes them) and a file; each step_finish claims the cost
          FAKE_KILO_STEP_COST (a forged bill, when it lies) and FAKE_KILO_STEP_TOKENS tokens in and out (forged
          counts); a refused call ends the run as the CLI does
  huge    tens of MB of output, one line of 5 MB, then write        leak   print every env value, then write
  env     write this process's environment as JSON to FAKE_KILO_ENV_DUMP, make FAKE_KILO_STEPS model calls
  once    the first run (no FAKE_KILO_MARKER file yet) sleeps; later runs write (worker-killed case)
  chatty  FAKE_KILO_LINES numbered text events, FAKE_KILO_EVERY s apart, no model call, then (FAKE_KILO_MARKER
          written) write
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote


def emit(kind: str, **part: object) -> None:
    print(json.dumps({"type": kind, "timestamp": int(time.time() * 1000), "part": part}), flush=True)


def write(name: str, text: str) -> None:
    emit("step_start")
    Path(name).write_text(text)
    emit("tool_use", tool="write", state={"status": "completed", "input": {"filePath": name}})
    emit("step_finish", reason="tool-calls", cost=0.001, tokens={"input": 100, "output": 10})
    emit("step_start")
    emit("text", text=f"Wrote {name}.")
    emit("step_finish", reason="stop", cost=0.001, tokens={"input": 120, "output": 5})


def model_call(step: int) -> str | None:
    """One chat completion through the configured provider; None, or the error that stopped it."""
    config = json.loads(os.environ["KILO_CONFIG_CONTENT"])
    provider_id, model = config["model"].split("/", 1)
    base = config["provider"][provider_id]["options"]["baseURL"]
    body = {"model": model, "messages": [{"role": "user", "content": f"step {step}"}]}
    request = urllib.request.Request(
        base + "/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {os.environ['KILO_GATEWAY_KEY']}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def sleep_forever() -> None:
    child = subprocess.Popen(["sleep", "300"])
    pids = os.environ.get("FAKE_KILO_PIDS")
    if pids:
        Path(pids).write_text(f"{os.getpid()} {child.pid}")
    emit("step_start")
    emit("text", text="thinking for a long time")
    time.sleep(300)


def agent_list() -> None:
    listed = os.environ.get("FAKE_KILO_LIST_LOG")
    if listed:  # each listing noted (how often the runner asks)
        with open(listed, "a") as f:
            f.write("listed\n")
    for md in sorted(Path(os.environ["KILO_CONFIG_DIR"], "agent").glob("*.md")):
        head = md.read_text().split("---")[1]
        perms = head.split("permission:", 1)[1] if "permission:" in head else ""
        rules = [{"permission": "*", "action": "allow", "pattern": "*"}]
        for line in perms.splitlines():
            name, _, action = line.strip().partition(": ")
            if name and action:
                rules.append({"permission": name, "action": action, "pattern": "*"})
        print(f"{md.stem} (primary)\n" + json.dumps(rules, indent=2))


def main() -> int:  # noqa: C901 - the stand-in CLI's modes, one branch each
    if sys.argv[1:3] == ["agent", "list"]:
        agent_list()
        return 0
    mode = os.environ.get("FAKE_KILO_MODE", "write")
    if os.environ.get("FAKE_KILO_ECHO_TASK"):  # the task the runner gave, as the agent's first words
        emit("text", text="task: " + sys.argv[-1])
    target = os.environ.get("FAKE_KILO_FILE", "CHANGE.md")
    if mode == "write":
        write(target, "a change\n")
    elif mode == "fail":
        emit("step_start")
        print(
            json.dumps({"type": "error", "error": {"name": "ProviderError", "data": {"message": "model refused"}}}),
            flush=True,
        )
        print("fatal: the model refused", file=sys.stderr)
        return 3
    elif mode == "sleep":
        sleep_forever()
    elif mode == "steps":
        for i in range(int(os.environ.get("FAKE_KILO_STEPS", "10"))):
            emit("step_start")
            failed = model_call(i)
            if failed:
                print(
                    json.dumps({"type": "error", "error": {"name": "APIError", "data": {"message": failed}}}),
                    flush=True,
                )
                return 1
            Path(f"step-{i}.txt").write_text(f"step {i}\n")
            emit(
                "step_finish",
                reason="tool-calls",
                cost=float(os.environ.get("FAKE_KILO_STEP_COST", "0.4")),
                tokens={
                    "input": int(os.environ.get("FAKE_KILO_STEP_TOKENS", "1000")),  # forged, when it lies
                    "output": int(os.environ.get("FAKE_KILO_STEP_TOKENS", "100")),
                },
            )
            time.sleep(0.2)
        emit("text", text="all steps done")
    elif mode == "huge":
        line = "x" * 200
        for _ in range(int(os.environ.get("FAKE_KILO_HUGE_MB", "20")) * 5_000):
            sys.stdout.write(line + "\n")
        sys.stdout.write("y" * 5_000_000 + "\n")
        sys.stdout.flush()
        write(target, "after the flood\n")
    elif mode == "leak":
        if os.environ.get("FAKE_KILO_GIT_SNAPSHOT"):  # the clone's .git as the agent sees it, for the scan
            git = Path(".git")  # a gitlink to the clone's git directory, kept outside the checkout
            git = Path(git.read_text().removeprefix("gitdir: ").strip()) if git.is_file() else git
            shutil.copytree(git, os.environ["FAKE_KILO_GIT_SNAPSHOT"])
        for name, value in os.environ.items():
            if name.startswith("LEAK_"):
                b64 = base64.b64encode(value.encode())
                emit("text", text=f"{name}={value} url={quote(value, safe='')} b64={b64!r}")
                print(f"stderr {value}", file=sys.stderr, flush=True)
        write(target, "no secrets here\n")
    elif mode == "env":
        Path(os.environ["FAKE_KILO_ENV_DUMP"]).write_text(json.dumps(dict(os.environ)))
        for i in range(int(os.environ.get("FAKE_KILO_STEPS", "1"))):
            failed = model_call(i)
            if failed:
                print(failed, file=sys.stderr, flush=True)
                return 1
        write(target, "looked around\n")
    elif mode == "chatty":
        for i in range(int(os.environ.get("FAKE_KILO_LINES", "20"))):
            emit("text", text=f"line {i}")
            time.sleep(float(os.environ.get("FAKE_KILO_EVERY", "0.1")))
        if os.environ.get("FAKE_KILO_MARKER"):  # said everything: the job's end comes next
            Path(os.environ["FAKE_KILO_MARKER"]).write_text("done")
        write(target, "said a lot\n")
    elif mode == "once":
        marker = Path(os.environ["FAKE_KILO_MARKER"])
        if not marker.exists():
            marker.write_text("first attempt")
            sleep_forever()
        write(target, "second attempt\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
