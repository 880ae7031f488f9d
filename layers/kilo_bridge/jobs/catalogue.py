"""The agent catalogue: named agents a job may run (`agent_task/agents/`).

`catalog.json` says what each agent is and what happens after its run (a pull request, or a report only);
`kilo/agent/<name>.md` is the Kilo agent definition the CLI loads (its permissions: the `review` agent
can neither edit nor run commands). The `deploy` agent only prepares: the runner runs the deploy's command.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import orjson

from kilo_bridge.errors import InvalidInput
from kilo_bridge.jobs.models import AgentInfo

NETWORKS = ("none", "allowlist")
# What follows the agent's run: a pull request, a report, or the runner's deploy step (agent_task/stages/deploy.py).
AFTER = ("pull_request", "report", "deploy")


class UnknownAgent(InvalidInput, code="unknown_agent"):
    """The agent is not in the catalogue; `details` lists the known ones."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    description: str
    after: str  # "pull_request" | "report" | "deploy"
    requires_prompt: bool
    default_prompt: str | None
    definition: Path
    accepts_patch: bool = False
    # Read-only: its tools may neither change nor leave the checkout (checked against the CLI's own rule
    # merge before it runs), and the sandbox mounts the checkout read-only. Report agents are, unless the
    # catalogue says otherwise (`build` runs a build, which writes).
    read_only: bool = True
    # "none": the agent reaches its model endpoint and nothing else; "allowlist": also AGENT_EGRESS_ALLOW's
    # hosts, through the runner's egress proxy.
    network: str = "none"

    def info(self) -> AgentInfo:
        return AgentInfo(
            name=self.name,
            description=self.description,
            after=self.after,  # type: ignore[arg-type]
            requires_prompt=self.requires_prompt,
            accepts_patch=self.accepts_patch,
            default_prompt=self.default_prompt,
        )


@lru_cache(maxsize=4)
def load_catalog(directory: Path) -> dict[str, AgentSpec]:
    raw = orjson.loads((directory / "catalog.json").read_bytes())
    agents = {}
    for name, spec in raw.items():
        definition = directory / "kilo" / "agent" / f"{name}.md"
        if not definition.is_file():
            raise RuntimeError(f"agent {name!r} has no definition at {definition}")
        if spec["after"] not in AFTER:
            raise RuntimeError(f"agent {name!r}: after must be one of {', '.join(AFTER)}")
        agents[name] = AgentSpec(
            name,
            spec["description"],
            spec["after"],
            bool(spec.get("requiresPrompt")),
            spec.get("defaultPrompt"),
            definition,
            bool(spec.get("acceptsPatch")),
            bool(spec.get("readOnly", spec["after"] == "report")),
            spec.get("network", "none"),
        )
        if agents[name].network not in NETWORKS:
            raise RuntimeError(f"agent {name!r}: network must be none or allowlist")
    return agents


def request_rules(catalog: dict[str, AgentSpec]) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The catalogue's rules as JSON Schema for the OpenAPI document: the `agent` field's names, and per agent
    what a run of it takes (a prompt when required; a patch only if it accepts one; a deploy step and
    approval only for a deploy agent, which needs a step or a profile that holds DEPLOY_COMMAND)."""
    per_agent: list[dict[str, object]] = []
    for spec in catalog.values():
        props: dict[str, object] = {}
        then: dict[str, object] = {"properties": props}
        if spec.requires_prompt:
            then["required"] = ["prompt"]
            props["prompt"] = {"type": "string"}
        if not spec.accepts_patch:
            props["patch"] = {"type": "null"}
        if spec.after == "deploy":
            then["anyOf"] = [
                {"required": ["deploy"], "properties": {"deploy": {"type": "object"}}},
                {"required": ["profile"], "properties": {"profile": {"type": "string"}}},
            ]
        else:
            props["deploy"] = {"type": "null"}
            props["requireApproval"] = {"const": False}
        per_agent.append({"if": {"required": ["agent"], "properties": {"agent": {"const": spec.name}}}, "then": then})
    return {"enum": sorted(catalog)}, per_agent


def get_agent(directory: Path, name: str) -> AgentSpec:
    catalog = load_catalog(directory)
    if name not in catalog:
        known = ", ".join(sorted(catalog))
        raise UnknownAgent(
            f"agent: unknown agent {name!r}; known agents: {known}.",
            details=[{"field": "agent", "message": "unknown agent", "known": sorted(catalog)}],
        )
    return catalog[name]
