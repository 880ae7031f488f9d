"""The agent task image (agent_task/Dockerfile, not buildable here: no container engine) on paper: a supported
Node.js, and the Kilo CLI installed exactly as package-lock.json pins it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "agent_task" / "Dockerfile").read_text()


def test_node_is_a_supported_lts() -> None:
    (major,) = re.findall(r"^ARG NODE_MAJOR=(\d+)$", DOCKERFILE, re.MULTILINE)
    assert int(major) in (22, 24)  # 20 is past its end of life (2026-04-30)


def test_the_cli_comes_from_the_lockfile() -> None:
    commands = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    npm = [line for line in commands if re.search(r"\bnpm (i|install|ci)\b", line)]
    assert npm and all("npm ci " in line for line in npm), npm
    assert "COPY agent_task/package.json agent_task/package-lock.json" in DOCKERFILE
