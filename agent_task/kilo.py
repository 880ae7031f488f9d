"""The Kilo CLI as the runner drives it: `kilo run --auto --format json --agent NAME "task"` with a
minimal environment, a provider config pointing at this bridge's own `/v1` on the job's key (the bridge
admits, meters and relays every model call, subagents' and title calls included), and its JSON events turned
into progress and log lines — never into money: the CLI's own cost figures are the agent's to forge."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kilo_bridge.config import Settings

PROVIDER = "kilobridge"
# Offline-safe, quiet switches: no model list download, no sharing, no session upload.
QUIET = {
    "KILO_DISABLE_MODELS_FETCH": "1",
    "KILO_DISABLE_SHARE": "1",
    "KILO_DISABLE_SESSION_INGEST": "1",
    "KILO_DISABLE_AUTOUPDATE": "1",
    "NO_COLOR": "1",
    "CI": "1",
    "TERM": "dumb",
}


def provider_config(settings: Settings, model: str) -> dict[str, Any]:
    """One provider (the bridge's `/v1`; the job's key comes from the environment), one model."""
    return {
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Kilo Bridge",
                "options": {"baseURL": settings.agent_api_base, "apiKey": "{env:KILO_GATEWAY_KEY}"},
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
    env = {**profile_env, **QUIET}
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


@dataclass(slots=True)
class AgentProgress:
    """What the CLI's events told us so far."""

    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
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
            tokens: dict[str, Any] = part["tokens"] if isinstance(part.get("tokens"), dict) else {}
            self.input_tokens += int(tokens.get("input") or 0)
            self.output_tokens += int(tokens.get("output") or 0)
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
