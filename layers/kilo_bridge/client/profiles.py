"""`kilo-bridge profiles create|rotate|list|delete`: saved job variables on a server. A value is read from
this process's environment by its name (`--env GITHUB_TOKEN`), never from argv, and is never printed."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kilo_bridge.client.api import Api


def add_parser(sub: Any, common: argparse.ArgumentParser, run: Any) -> None:
    profiles = sub.add_parser("profiles", help="saved job variables (a run names one with --profile)")
    actions = profiles.add_subparsers(dest="action", required=True)
    for name, text in (("create", "save a new profile"), ("rotate", "replace all of a profile's values")):
        cmd = actions.add_parser(name, parents=[common], help=text)
        cmd.add_argument("name")
        cmd.add_argument(
            "--env",
            action="append",
            required=True,
            metavar="NAME",
            help="a variable of your environment to save (repeat); its value never goes in argv",
        )
        cmd.set_defaults(action=f"profiles-{name}")
    actions.add_parser("list", parents=[common], help="profile names and their variable names").set_defaults(
        action="profiles-list"
    )
    delete = actions.add_parser("delete", parents=[common], help="delete a profile")
    delete.add_argument("name")
    delete.set_defaults(action="profiles-delete")
    profiles.set_defaults(func=run)


def _values(names: list[str]) -> dict[str, str] | None:
    missing = [name for name in names if name not in os.environ]
    if missing:
        print(f"kilo-bridge: not in the environment: {', '.join(missing)}", file=sys.stderr)
        return None
    return {name: os.environ[name] for name in names}


def _show(profile: dict[str, Any], as_json: bool = False) -> None:
    if as_json:  # what the API answered: names and variable names, never a value
        print(json.dumps(profile), flush=True)
        return
    print(f"{profile['name']}  {' '.join(profile['variables'])}  (updated {profile['updatedAt'][:19]})")


def save(api: Api, args: argparse.Namespace) -> int:
    env = _values(args.env)
    if env is None:
        return 2
    if args.action == "profiles-create":
        profile = api.call("POST", "/api/kilo/profiles", {"name": args.name, "env": env})
    else:
        profile = api.call("PUT", f"/api/kilo/profiles/{args.name}", {"env": env})
    _show(profile, args.json)
    return 0


def listing(api: Api, args: argparse.Namespace) -> int:
    profiles = api.call("GET", "/api/kilo/profiles")["profiles"]
    if args.json:  # one array, as `triggers list --json` and `schedules list --json` print
        print(json.dumps(profiles), flush=True)
        return 0
    for profile in profiles:
        _show(profile)
    return 0


def delete(api: Api, args: argparse.Namespace) -> int:
    api.call("DELETE", f"/api/kilo/profiles/{args.name}")
    print(f"{args.name} deleted")
    return 0


HANDLERS = {"profiles-create": save, "profiles-rotate": save, "profiles-list": listing, "profiles-delete": delete}
