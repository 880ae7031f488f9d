"""`make invoke FN=<function> EVENT=<file>`: run a Lambda handler on an event on this machine, without
Docker, against the Redis and AWS endpoints the environment names (the same event files work with
`sam local invoke <Function> -e <file>` where Docker exists).

FN is a folder under functions/ (api, dispatcher, finalizer, scheduled) or a template logical id
(ApiFunction, DispatcherFunction, FinalizerFunction, ScheduledFunction).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
ALIASES = {
    "ApiFunction": "api",
    "DispatcherFunction": "dispatcher",
    "FinalizerFunction": "finalizer",
    "ScheduledFunction": "scheduled",
}


@dataclass
class Context:
    """The parts of Lambda's context object our handlers (and Powertools) read."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_function(function: str) -> ModuleType:
    """functions/<name>/app.py imported fresh from this environment, as at a Lambda cold start."""
    name = ALIASES.get(function, function)
    path = ROOT / "functions" / name / "app.py"
    if not path.is_file():
        raise SystemExit(f"no handler at {path} (FN is one of: {', '.join(sorted(ALIASES.values()))})")
    spec = importlib.util.spec_from_file_location(f"{name}_function_{uuid.uuid4().hex[:8]}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(function: str, event: dict) -> object:
    module = load_function(function)
    return module.handler(event, Context(function_name=function, aws_request_id=str(uuid.uuid4())))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    event = json.loads(Path(argv[1]).read_text())
    print(json.dumps(invoke(argv[0], event), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
