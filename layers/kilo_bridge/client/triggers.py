"""`kilo-bridge triggers create|list|show|rotate|delete|deliveries`: signed webhook URLs that start a run. The
signing secret is in the create and rotate answers only: printed that once, to stdout (never to stderr, where
logs go)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kilo_bridge.client.api import Api


def add_parser(sub: Any, common: argparse.ArgumentParser, run: Any) -> None:
    triggers = sub.add_parser("triggers", help="webhook triggers: a signed URL that starts a run")
    actions = triggers.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common], help="create a trigger; prints its secret once")
    create.add_argument("name", help="for people: what calls it")
    create.add_argument("--agent", required=True, help="agent name (GET /api/kilo/agents)")
    create.add_argument("--repo", required=True, help="the repository every run works on")
    template = create.add_mutually_exclusive_group()
    template.add_argument("--prompt-template", help="the run's prompt, with {{ body.path.to.field }} from the call")
    template.add_argument("--prompt-template-file", metavar="FILE", help="the same, read from a file")
    create.add_argument("--profile", help="a saved profile whose variables each run gets")
    create.add_argument("--max-cost-usd", type=float, help="each run's cost cap")
    create.add_argument("--base-branch")
    create.add_argument("--dry-run", action="store_true", help="each run keeps its diff only: no push, no pull request")
    create.set_defaults(action="triggers-create")
    actions.add_parser("list", parents=[common], help="this key's triggers").set_defaults(action="triggers-list")
    for name, text in (
        ("show", "a trigger"),
        ("rotate", "a new signing secret (printed once); the old one is refused from now on"),
        ("delete", "delete a trigger"),
        ("deliveries", "a trigger's last deliveries and the jobs they started"),
    ):
        cmd = actions.add_parser(name, parents=[common], help=text)
        cmd.add_argument("id")
        cmd.set_defaults(action=f"triggers-{name}")
    triggers.set_defaults(func=run)


def _print_json(value: Any) -> None:
    print(json.dumps(value), flush=True)


def _line(t: dict[str, Any]) -> str:
    return f"{t['id']}  {t['name']}  {t['agent']}  {t['repoUrl']}  {t['url']}"


def create(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "agent": args.agent, "repoUrl": args.repo, "dryRun": args.dry_run}
    if args.prompt_template_file:
        try:
            body["promptTemplate"] = Path(args.prompt_template_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"kilo-bridge: cannot read the template: {exc}", file=sys.stderr)
            return 2
    optional = {
        "promptTemplate": args.prompt_template,
        "profile": args.profile,
        "maxCostUsd": args.max_cost_usd,
        "baseBranch": args.base_branch,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return _with_secret(api.call("POST", "/api/kilo/triggers", body), args.json)


def rotate(api: Api, args: argparse.Namespace) -> int:
    return _with_secret(api.call("POST", f"/api/kilo/triggers/{args.id}/rotate"), args.json)


def _with_secret(created: dict[str, Any], as_json: bool) -> int:
    if as_json:
        _print_json(created)
        return 0
    print(_line(created))
    print(f"secret: {created['secret']}")
    print("kilo-bridge: the secret is shown this once: keep it where the sender signs its calls", file=sys.stderr)
    return 0


def listing(api: Api, args: argparse.Namespace) -> int:
    triggers = api.call("GET", "/api/kilo/triggers")["triggers"]
    if args.json:
        _print_json(triggers)
        return 0
    for t in triggers:
        print(_line(t))
    return 0


def show(api: Api, args: argparse.Namespace) -> int:
    t = api.call("GET", f"/api/kilo/triggers/{args.id}")
    if args.json:
        _print_json(t)
        return 0
    rows = [
        ("trigger", t["id"]),
        ("name", t["name"]),
        ("url", t["url"]),
        ("agent", t["agent"]),
        ("repo", t["repoUrl"]),
        ("profile", t.get("profile")),
        ("max cost", f"${t['maxCostUsd']}" if t.get("maxCostUsd") is not None else None),
        ("base branch", t.get("baseBranch")),
        ("dry run", "yes" if t.get("dryRun") else None),
        ("created", t["createdAt"]),
        ("template", t["promptTemplate"]),
    ]
    for name, value in rows:
        if value not in (None, ""):
            print(f"{name + ':':<14}{value}")
    return 0


def deliveries(api: Api, args: argparse.Namespace) -> int:
    seen = api.call("GET", f"/api/kilo/triggers/{args.id}/deliveries")["deliveries"]
    if args.json:
        _print_json(seen)
        return 0
    for d in seen:
        job = f"{d['jobId']} {d.get('jobStatus') or ''}".strip() if d.get("jobId") else "-"
        print(f"{d['at'][:19]}  {d['outcome']:<8} {d.get('code') or '-':<16} {job}")
    return 0


def delete(api: Api, args: argparse.Namespace) -> int:
    api.call("DELETE", f"/api/kilo/triggers/{args.id}")
    print(f"{args.id} deleted")
    return 0


HANDLERS = {
    "triggers-create": create,
    "triggers-list": listing,
    "triggers-show": show,
    "triggers-rotate": rotate,
    "triggers-deliveries": deliveries,
    "triggers-delete": delete,
}
