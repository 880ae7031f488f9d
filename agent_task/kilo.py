"""The Kilo CLI as the runner drives it: `kilo run --auto --format json --agent NAME "task"` with a
minimal environment, a provider config pointing at this bridge's own `/v1` on the job's key (the bridge
admits, meters and relays every model call, subagents' and title calls included), and its JSON events turned
into progress and log lines — never into money: the CLI's own cost figures are the agent's to forge."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kilo_bridge.config import Settings

PROVIDER = "kilobridge"
# Offline-safe, quiet switches: no model list download, no sharing, no session upload, no telemetry (the
# 7.7.7 binary turns PostHog on unless KILO_TELEMETRY_LEVEL is set to anything but `all`; the door refuses
# that egress anyway).
QUIET = {
    "KILO_TELEMETRY_LEVEL": "off",
    "DO_NOT_TRACK": "1",
    "KILO_DISABLE_MODELS_FETCH": "1",
    "KILO_DISABLE_SHARE": "1",
    "KILO_DISABLE_SESSION_INGEST": "1",
    "KILO_DISABLE_AUTOUPDATE": "1",
    "NO_COLOR": "1",
    "CI": "1",
    "TERM": "dumb",
}
# The CLI on a short leash (switches read from the pinned 7.7.7 binary): the checkout is hostile, so nothing
# in it configures the CLI — no `kilo.json`/`opencode.json`, `.kilo/`, `.kilocode/` (MCP servers, plugins,
# agent and permission overrides), no `AGENTS.md`/`CLAUDE.md` instructions, no skills with shell — and the
# run never attaches to a daemon another job (or user) started. A 429 storm ends after a few retries
# instead of running silently to the job's timeout.
SESSION_RETRY_LIMIT = 3
LEASH = {
    "KILO_DISABLE_PROJECT_CONFIG": "1",
    "KILO_PURE": "1",
    "KILO_DISABLE_DEFAULT_PLUGINS": "1",
    "KILO_NO_DAEMON": "1",
    "KILO_DISABLE_CLAUDE_CODE": "1",
    "KILO_DISABLE_EXTERNAL_SKILLS": "1",
    "KILO_DISABLE_SKILL_SHELL": "1",
    "KILO_DISABLE_LSP_DOWNLOAD": "1",
    "KILO_SESSION_RETRY_LIMIT": str(SESSION_RETRY_LIMIT),
}


def provider_config(base_url: str, model: str) -> dict[str, Any]:
    """One provider (the runner's model endpoint; the job's key comes from the environment), one model."""
    return {
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Kilo Bridge",
                "options": {"baseURL": base_url, "apiKey": "{env:KILO_GATEWAY_KEY}"},
                "models": {model: {}},
            }
        },
        "model": f"{PROVIDER}/{model}",
        "autoupdate": False,
        "share": "disabled",
    }


def cli_env(
    settings: Settings,
    workspace: Path,
    agents_dir: Path,
    config: dict[str, Any],
    profile_env: dict[str, str],
    job_key: str,
) -> dict[str, str]:
    """What the agent process gets: its own HOME and config, the job's profileEnv (minus the repository
    token, which only git sees), the job's own key; nothing of the worker's own environment."""
    home = workspace / "kilo-home"
    config_dir = workspace / "kilo-config"
    home.mkdir(parents=True, exist_ok=True)
    if not config_dir.exists():
        # A copy: the CLI may write into its config dir; the catalogue stays read-only and shared.
        shutil.copytree(agents_dir / "kilo", config_dir)
    node_dir = str(Path(shutil.which("node") or "/usr/bin/node").parent)
    env = {**profile_env, **QUIET, **LEASH}
    env.update(
        {
            "PATH": f"{node_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "KILO_CONFIG_DIR": str(config_dir),
            "KILO_CONFIG_CONTENT": orjson.dumps(config).decode(),
            "KILO_GATEWAY_KEY": job_key,
            "LANG": "C.UTF-8",
        }
    )
    return env


# What a report-only agent must deny, whatever the CLI's defaults or a later release add: its tools that
# change files, run commands (`task` starts the built-in `general` subagent, which has bash), leave the
# checkout or reach the network.
READ_ONLY_DENIES = ("edit", "bash", "task", "external_directory", "webfetch", "websearch")


def listed_agents(output: str) -> dict[str, list[dict[str, Any]]]:
    """`kilo agent list`: each primary agent's name and effective rules (`NAME (primary)`, then its rules as a
    JSON array: the last rule matching a permission and pattern wins)."""
    agents: dict[str, list[dict[str, Any]]] = {}
    name: str | None = None
    body: list[str] = []
    for line in [*output.splitlines(), "end (end)"]:
        head, _, kind = line.partition(" ")
        if head and not line.startswith((" ", "[", "]")) and kind.startswith("(") and kind.endswith(")"):
            if name is not None:
                try:
                    rules = orjson.loads("\n".join(body) or "[]")
                except orjson.JSONDecodeError:
                    rules = []
                agents[name] = [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []
            name, body = (head if kind == "(primary)" else None), []
        elif name is not None:
            body.append(line)
    return agents


def listing_digest(cli: str, agents_dir: Path) -> str:
    """What `kilo agent list` depends on: the CLI's build (its binary), the catalogue, the switches we set."""
    h = hashlib.sha256()
    real = Path(os.path.realpath(cli))
    info = real.stat()
    h.update(f"{real}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    h.update(orjson.dumps({**QUIET, **LEASH}, option=orjson.OPT_SORT_KEYS))
    for path in sorted(p for p in agents_dir.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(agents_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def read_listing(path: Path) -> tuple[dict[str, list[dict[str, Any]]], str] | None:
    """A listing kept by `write_listing` (its agents, the HOME it was listed with), or None."""
    try:
        data = orjson.loads(path.read_bytes())
        return data["agents"], data["home"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None


def write_listing(path: Path, agents: dict[str, list[dict[str, Any]]], home: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"agents": agents, "home": home}))
    os.replace(tmp, path)


def not_denied(rules: list[dict[str, Any]], home: str, permissions: tuple[str, ...] = READ_ONLY_DENIES) -> list[str]:
    """The permissions not denied outright: no catch-all `deny` (pattern `*`, for it or for `*`), or a rule
    after it that allows or asks for some pattern. The CLI's own reading of its tool output under the agent's
    private HOME is the one exception."""
    left = []
    for perm in permissions:
        denied = False
        for rule in rules:
            if rule.get("permission") not in (perm, "*"):
                continue
            pattern, action = str(rule.get("pattern")), rule.get("action")
            if pattern == "*":
                denied = action == "deny"
            elif action != "deny" and not (perm == "external_directory" and pattern.startswith(home + "/")):
                denied = False
        if not denied:
            left.append(perm)
    return left


@dataclass(slots=True)
class AgentProgress:
    """What the CLI's events told us so far."""

    steps: int = 0  # (its token counts are the meter's: the CLI's own are the agent's to forge)
    texts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def apply(self, event: dict[str, Any]) -> str | None:
        """Update from one event; return a short human line for the live log (None: nothing to say)."""
        kind = event.get("type")
        part: dict[str, Any] = event["part"] if isinstance(event.get("part"), dict) else {}
        if kind == "step_start":
            self.steps += 1
            return f"step {self.steps}"
        if kind == "text":
            text = str(part.get("text") or "").strip()
            if text:
                self.texts.append(text)
                return text
            return None
        if kind == "tool_use":
            state: dict[str, Any] = part["state"] if isinstance(part.get("state"), dict) else {}
            args: dict[str, Any] = state["input"] if isinstance(state.get("input"), dict) else {}
            target = args.get("filePath") or args.get("path") or args.get("pattern") or args.get("command") or ""
            return f"{part.get('tool', 'tool')} {str(target)[:200]} ({state.get('status', '?')})".replace("  ", " ")
        if kind == "step_finish":
            return f"step {self.steps} done ({part.get('reason', '')})"
        if kind == "error":
            err = event.get("error")
            message = (
                str(err.get("data", {}).get("message") or err.get("name") or err)
                if isinstance(err, dict)
                else str(err or event)
            )
            self.errors.append(message[:500])
            return f"error: {message[:500]}"
        return None

    def summary(self) -> str:
        return (self.texts[-1] if self.texts else "")[:4000]
