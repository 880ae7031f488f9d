"""`kilo-bridge schedules create|list|show|pause|resume|delete`: agent runs on a cron, kept by the server (the
local worker fires them; on AWS, EventBridge Scheduler)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kilo_bridge.client.api import Api


def add_parser(sub: Any, common: argparse.ArgumentParser, run: Any) -> None:
    schedules = sub.add_parser("schedules", help="scheduled agent runs (cron and time zone)")
    actions = schedules.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common], help="schedule an agent run")
    create.add_argument("name")
    create.add_argument("--cron", required=True, help='five fields, e.g. "0 3 * * *"; at most every 10 minutes')
    create.add_argument("--timezone", default="UTC", help="IANA time zone of the cron (default: %(default)s)")
    create.add_argument("--repo", required=True, help="repository URL")
    create.add_argument("--agent", required=True, help="agent name (GET /api/kilo/agents)")
    create.add_argument("--prompt", help="the task for the agent")
    create.add_argument("--profile", help="a saved profile whose variables each run gets (its secrets)")
    create.add_argument("--model")
    create.add_argument("--base-branch")
    create.add_argument("--dry-run", action="store_true", help="keep the diff only: no push, no pull request")
    create.add_argument("--timeout-s", type=int, help="stop each run after this many seconds")
    create.add_argument("--max-cost-usd", type=float, help="stop the agent before it passes this cost")
    create.set_defaults(action="schedules-create")
    actions.add_parser("list", parents=[common], help="this key's schedules").set_defaults(action="schedules-list")
    for name, text in (
        ("show", "a schedule"),
        ("pause", "stop a schedule firing"),
        ("resume", "start a paused schedule firing again"),
        ("delete", "delete a schedule"),
    ):
        cmd = actions.add_parser(name, parents=[common], help=text)
        cmd.add_argument("id")
        cmd.set_defaults(action=f"schedules-{name}")
    schedules.set_defaults(func=run)


def _print_json(value: Any) -> None:
    print(json.dumps(value), flush=True)


def _line(s: dict[str, Any]) -> str:
    when = f"next {s['nextRunAt'][:19]}" if s.get("nextRunAt") else "-"
    run = s["run"]
    where = f"{s['cron']} ({s['timezone']})"
    return f"{s['id']}  {s['state']:<7} {where}  {when}  {run['agent']} {run['repoUrl']}  {s['name']}"


def _one(schedule: dict[str, Any], as_json: bool) -> int:
    print(json.dumps(schedule) if as_json else _line(schedule), flush=True)
    return 0


def create(api: Api, args: argparse.Namespace) -> int:
    run: dict[str, Any] = {"repoUrl": args.repo, "agent": args.agent, "dryRun": args.dry_run}
    optional = {
        "prompt": args.prompt,
        "profile": args.profile,
        "model": args.model,
        "baseBranch": args.base_branch,
        "maxCostUsd": args.max_cost_usd,
        "timeoutMs": args.timeout_s * 1000 if args.timeout_s else None,
    }
    run.update({k: v for k, v in optional.items() if v is not None})
    body = {"name": args.name, "cron": args.cron, "timezone": args.timezone, "run": run}
    return _one(api.call("POST", "/api/kilo/schedules", body), args.json)


def listing(api: Api, args: argparse.Namespace) -> int:
    schedules = api.call("GET", "/api/kilo/schedules")["schedules"]
    if args.json:
        _print_json(schedules)
        return 0
    for s in schedules:
        print(_line(s))
    return 0


def show(api: Api, args: argparse.Namespace) -> int:
    return _one(api.call("GET", f"/api/kilo/schedules/{args.id}"), args.json)


def pause(api: Api, args: argparse.Namespace) -> int:
    return _one(api.call("POST", f"/api/kilo/schedules/{args.id}/pause"), args.json)


def resume(api: Api, args: argparse.Namespace) -> int:
    return _one(api.call("POST", f"/api/kilo/schedules/{args.id}/resume"), args.json)


def delete(api: Api, args: argparse.Namespace) -> int:
    api.call("DELETE", f"/api/kilo/schedules/{args.id}")
    print(f"{args.id} deleted")
    return 0


HANDLERS = {
    "schedules-create": create,
    "schedules-list": listing,
    "schedules-show": show,
    "schedules-pause": pause,
    "schedules-resume": resume,
    "schedules-delete": delete,
}
