"""What a set of environment variables (a job's `profileEnv`, a saved profile's values) may hold.

Checked before anything is sealed or stored, so a bad name or value is refused naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from kilo_bridge.errors import invalid

ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Names that would change how the runner, git, node or the dynamic linker behave.
RESERVED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "PWD",
        "TMPDIR",
        "TEMP",
        "TMP",
        "LANG",
        "TERM",
        "IFS",
        "ENV",
        "BASH_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "NODE_PATH",
        "SSH_AUTH_SOCK",
        "SSH_ASKPASS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "KILO_API_KEY",
        "KILO_CONFIG",
        "KILO_CONFIG_CONTENT",
        "KILO_CONFIG_DIR",
        "JOB_ID",
        "REDIS_URL",
    }
)
RESERVED_ENV_PREFIXES = ("LD_", "GIT_", "KILO_", "AWS_", "DYLD_", "NPM_CONFIG_", "REDIS_", "KB_", "OPENCODE_")
MAX_ENV_NAME = 128
MAX_ENV_VALUE = 8_192
MAX_ENV_TOTAL = 64_000
ENV_TOTAL_RULE = f"Names and values together: at most {MAX_ENV_TOTAL:,} characters."
# The same rules as JSON Schema, for the API models (the OpenAPI document): an object of these names and values.
ENV_SCHEMA: dict[str, Any] = {
    "propertyNames": {
        "type": "string",
        "pattern": ENV_NAME_RE.pattern,
        "maxLength": MAX_ENV_NAME,
        "not": {
            "anyOf": [
                {"enum": sorted(RESERVED_ENV)},
                {"pattern": "^(?:" + "|".join(RESERVED_ENV_PREFIXES) + ")"},
            ]
        },
    },
    "additionalProperties": {"type": "string", "maxLength": MAX_ENV_VALUE, "pattern": "^[^\\u0000]*$"},
}


def check_profile_env(env: dict[str, str]) -> None:
    total = 0
    for name, value in env.items():
        field = f"profileEnv.{name}"[:80]
        if not ENV_NAME_RE.fullmatch(name) or len(name) > MAX_ENV_NAME:
            raise invalid("profileEnv", f"{name[:40]!r} is not a valid name (^[A-Z_][A-Z0-9_]*$).")
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            raise invalid(field, "is a reserved name.")
        if len(value) > MAX_ENV_VALUE:
            raise invalid(field, f"value is longer than {MAX_ENV_VALUE} characters.")
        if "\x00" in value:
            raise invalid(field, "value contains a NUL character.")
        total += len(name) + len(value)
    if total > MAX_ENV_TOTAL:
        raise invalid("profileEnv", f"is larger than {MAX_ENV_TOTAL} characters in all.")
