"""What a cold start loads: a handler imported in a fresh interpreter, and the API function after its first
answer to /healthz, leave out the modules only other routes or a retry need (the cold-start saving; the
benchmark measures its time, this pins that it stays)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

PROBE = """
import json, sys
sys.path.insert(0, "scripts")
import invoke
module = invoke.load_function(sys.argv[1])
if sys.argv[2]:
    module.handler(json.load(open(sys.argv[2])), invoke.Context(aws_request_id="cold-imports"))
# a module platform/lazy.py registered but nothing has read yet is not loaded
print(json.dumps(sorted(n for n, m in sys.modules.items() if type(m).__name__ != "_LazyModule")))
"""
# Needed by some route or by a retry, never by a cold start or the first answer to /healthz.
DEFERRED = {"tenacity", "croniter", "aiohttp", "httpx", "boto3", "aws_lambda_powertools.utilities.batch"}
# Not needed at all by a Lambda function: every store command goes through platform/resp.py (redis-py is only
# bullmq's, the local queue's), and Settings reads the environment itself (config.py).
NEVER = {"redis", "pydantic_settings"}


def loaded(function: str, event: str = "") -> set[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers"), str(ROOT)]),
        "AWS_LAMBDA_FUNCTION_NAME": "cold-imports",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "REDIS_URL": os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "AUTH_REQUIRED": "false",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, function, event], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("function", ["api", "dispatcher", "finalizer", "scheduled"])
def test_handler_import_leaves_out_what_it_does_not_use(function: str) -> None:
    assert DEFERRED & loaded(function) == set()


def test_first_healthz_answer_still_leaves_them_out() -> None:
    assert DEFERRED & loaded("api", str(ROOT / "events" / "api" / "healthz.json")) == set()


@pytest.mark.parametrize("function", ["api", "dispatcher", "finalizer", "scheduled"])
def test_no_function_loads_redis_py_or_pydantic_settings(function: str) -> None:
    assert NEVER & loaded(function) == set()


@pytest.mark.parametrize("event", ["healthz.json", "agents.json"])
def test_nor_does_the_first_answer(event: str) -> None:
    assert NEVER & loaded("api", str(ROOT / "events" / "api" / event)) == set()


@pytest.mark.parametrize("function", ["dispatcher", "finalizer"])
def test_the_job_functions_load_no_pydantic(function: str) -> None:
    """Their settings are a dataclass (config.py) and they build no API model (keys/store.py imports KeyView
    only to build one): pydantic was about a third of their cold start."""
    assert {"pydantic", "pydantic_core"} & loaded(function) == set()
