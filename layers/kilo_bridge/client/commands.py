"""`kilo-bridge jobs submit|list|show|cancel|approve|reject|logs` and `kilo-bridge generate`: what each prints,
and the exit code that says how a followed job ended (EXIT_CODES; documented in the README)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from kilo_bridge.client import profiles, schedules, triggers
from kilo_bridge.client.api import DEFAULT_URL, Api, ClientError

EXIT_CODES = {"succeeded": 0, "failed": 1, "timed_out": 3, "cancelled": 4}
EXIT_REFUSED = 5  # the server refused the request or could not be reached (2 is a usage error, as argparse's)
KEY_ENV = "KILO_BRIDGE_KEY"
GATEWAY_KEY_ENV = "KILO_BRIDGE_GATEWAY_KEY"  # on AWS: the API Gateway usage-plan key, sent as x-api-key
URL_ENV = "KILO_BRIDGE_URL"


def add_parsers(sub: Any) -> None:
    """The client's subcommands on the `kilo-bridge` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=os.getenv(URL_ENV, DEFAULT_URL), help=f"server (default: ${URL_ENV} or %(default)s)"
    )
    common.add_argument("--json", action="store_true", help="print JSON (one object per line when streaming)")

    jobs = sub.add_parser("jobs", help=f"agent jobs on a server (the key from ${KEY_ENV})")
    actions = jobs.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", parents=[common], help="start an agent job; prints its link")
    submit.add_argument("--repo", required=True, help="repository URL")
    submit.add_argument("--agent", required=True, help="agent name (GET /api/kilo/agents)")
    submit.add_argument("--prompt", help="the task for the agent")
    submit.add_argument(
        "--patch", metavar="FILE", help="a unified diff to apply first (apply-patch-and-pr); - for stdin"
    )
    submit.add_argument("--model")
    submit.add_argument("--base-branch")
    submit.add_argument("--dry-run", action="store_true", help="keep the diff only: no push, no pull request")
    submit.add_argument("--timeout-s", type=int, help="stop the job after this many seconds")
    submit.add_argument("--max-cost-usd", type=float, help="stop the agent before it passes this cost")
    submit.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of your environment to the job (e.g. GITHUB_TOKEN); its value never goes in argv",
    )
    submit.add_argument("--profile", help="a saved profile whose variables the job gets (--env values win)")
    submit.add_argument("--idempotency-key", help="a retried submit with the same key returns the same job")
    submit.add_argument("--follow", action="store_true", help="follow the live log; exit with the job's outcome")
    listing = actions.add_parser("list", parents=[common], help="recent jobs, newest first")
    listing.add_argument("--status", help="only jobs in this status")
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (
        ("show", "a job's status and result"),
        ("cancel", "cancel a job"),
        ("approve", "approve a deploy awaiting approval (its runner deploys)"),
        ("reject", "reject a deploy awaiting approval (cancelled, nothing deployed)"),
    ):
        actions.add_parser(name, parents=[common], help=text).add_argument("id")
    logs = actions.add_parser("logs", parents=[common], help="a job's log, live until it ends; exit with its outcome")
    logs.add_argument("id")
    jobs.set_defaults(func=run)

    profiles.add_parser(sub, common, run)
    triggers.add_parser(sub, common, run)
    schedules.add_parser(sub, common, run)

    gen = sub.add_parser("generate", parents=[common], help="generate text, streamed as it comes")
    gen.add_argument("prompt")
    gen.add_argument("--model")
    gen.add_argument("--system")
    gen.add_argument("--max-tokens", type=int)
    gen.set_defaults(func=run, action="generate")

    me = sub.add_parser("me", parents=[common], help="your key: limits, budget, spend this period, usage by model")
    me.set_defaults(func=run, action="me")


def run(args: argparse.Namespace) -> int:
    api = Api(args.url, os.getenv(KEY_ENV) or None, gateway_key=os.getenv(GATEWAY_KEY_ENV) or None)
    try:
        return HANDLERS[args.action](api, args)
    except ClientError as exc:
        where = f" (HTTP {exc.status} {exc.code})" if exc.status else ""
        print(f"kilo-bridge: {exc.message}{where}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130
    finally:
        api.close()


def _print_json(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value) + "\n")
    out.flush()


def _submit(api: Api, args: argparse.Namespace) -> int:
    missing = [name for name in args.env if name not in os.environ]
    if missing:
        print(f"kilo-bridge: not in the environment: {', '.join(missing)}", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"repoUrl": args.repo, "agent": args.agent, "dryRun": args.dry_run}
    optional = {
        "prompt": args.prompt,
        "model": args.model,
        "baseBranch": args.base_branch,
        "maxCostUsd": args.max_cost_usd,
        "profile": args.profile,
        "timeoutMs": args.timeout_s * 1000 if args.timeout_s else None,
    }
    if args.patch:
        try:
            optional["patch"] = sys.stdin.read() if args.patch == "-" else Path(args.patch).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"kilo-bridge: cannot read the patch: {exc}", file=sys.stderr)
            return 2
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.env:
        body["profileEnv"] = {name: os.environ[name] for name in args.env}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    accepted = api.call("POST", "/api/kilo/run-agent", body, headers)
    if args.json:
        _print_json(accepted)
    else:
        print(f"{accepted['jobId']} {accepted['status']} {accepted['statusUrl']}", flush=True)
    return _follow(api, accepted["jobId"], args.json) if args.follow else 0


def _logs(api: Api, args: argparse.Namespace) -> int:
    return _follow(api, args.id, args.json)


def _follow(api: Api, job_id: str, as_json: bool) -> int:
    """Log lines on stdout; on stderr a line per change of status, phase or progress (a heartbeat alone is not
    news) and, at the end, the outcome, summary, files and diff stat. The exit code from the end."""
    status, shown = "", ""
    for event in api.follow_job(job_id):
        if as_json:
            _print_json({"event": event.kind, **event.data})
        elif event.kind == "log":
            d = event.data
            print(f"{d['ts'][11:19]} {d['source']:<8} {d['msg']}", flush=True)
        elif event.kind == "status":
            line = _progress_line(event.data)
            if line != shown:
                print(line, file=sys.stderr, flush=True)
                shown = line
        elif event.kind == "error":
            print(f"kilo-bridge: {event.data['error']['message']}", file=sys.stderr)
            return EXIT_REFUSED
        if event.kind == "end":
            status = str(event.data["status"])
    job = api.call("GET", f"/api/kilo/job/{job_id}")
    status = status or str(job["status"])  # the end was seen on an earlier connection (a 204 now)
    if not as_json:
        print(f"kilo-bridge: job {job_id} {status}", file=sys.stderr)
        for name, value in _story(job):
            print(f"  {name + ':':<14}{value}", file=sys.stderr)
        sys.stderr.flush()
    return EXIT_CODES.get(status, 1)


def _progress_line(d: dict[str, Any]) -> str:
    moving = d["status"] in ("running", "cancelling")
    parts = [d["status"], d.get("phase") or "", f"{d.get('progress', 0)}%" if moving else ""]
    if d.get("cancelRequested") and d["status"] != "cancelling":  # a server from before `cancelling` was shown
        parts.append("cancelling")
    return "-- " + " ".join(p for p in parts if p)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "…"
    s = ms / 1000
    return f"{s:.1f} s" if s < 90 else f"{int(s // 60)} min {int(s % 60)} s"


def _story(job: dict[str, Any]) -> list[tuple[str, str]]:
    """What a finished job came to: its outcome, reason, summary, files, diff stat and where its time went."""
    result = job.get("result") or {}
    stat = result.get("diffStat") or {}
    rows = [
        ("outcome", job.get("outcome")),
        ("reason", job.get("reason")),
        ("error", job.get("error")),
        ("summary", result.get("summary")),
        ("files", ", ".join(result.get("filesChanged") or []) or None),
        (
            "diff stat",
            f"{stat['files']} files, +{stat['insertions']} -{stat['deletions']}" if stat.get("files") else None,
        ),
        ("pull request", result.get("prUrl")),
        ("duration", _duration(job["durationMs"]) if job.get("durationMs") is not None else None),
        ("phases", _phases(job.get("phases") or [])),
    ]
    return [(name, str(value)) for name, value in rows if value not in (None, "")]


def _phases(phases: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['phase']} {_duration(p.get('durationMs'))}" for p in phases)


def _list(api: Api, args: argparse.Namespace) -> int:
    query = f"?limit={args.limit}" + (f"&status={args.status}" if args.status else "")
    jobs = api.call("GET", "/api/kilo/jobs" + query)["jobs"]
    if args.json:
        _print_json(jobs)
        return 0
    for j in jobs:
        print(
            f"{j['id']}  {j['status']:<9} {j['phase'] or '-':<9} {j['agent']:<20} {j['createdAt'][:19]}  {j['repoUrl']}"
        )
    return 0


def _show(api: Api, args: argparse.Namespace) -> int:
    job = api.call("GET", f"/api/kilo/job/{args.id}")
    if args.json:
        _print_json(job)
        return 0
    result = job.get("result") or {}
    rows = [
        ("job", job["id"]),
        ("status", job["status"]),
        ("phase", job["phase"]),
        ("progress", f"{job['progress']}%" if job["status"] in ("queued", "running") else None),
        ("agent", job["agent"]),
        ("repo", job["repoUrl"]),
        ("task", job.get("prompt") or "the agent's default task"),
        ("dry run", "yes: the diff is kept, nothing is pushed" if job.get("dryRun") else "no"),
        ("created", job["createdAt"]),
        ("started", job.get("startedAt")),
        ("heartbeat", job.get("heartbeatAt") if job["status"] == "running" else None),
        ("finished", job.get("finishedAt")),
        ("cost", f"${result['costUsd']:.4f}" if result else None),
        *_story(job),
    ]
    for name, value in rows:
        if value not in (None, ""):
            print(f"{name + ':':<14}{value}")
    return 0


def _cancel(api: Api, args: argparse.Namespace) -> int:
    job = api.call("DELETE", f"/api/kilo/job/{args.id}")
    if args.json:
        _print_json(job)
    else:
        asked = job.get("cancelRequested") and job["status"] == "running"  # a server from before `cancelling`
        print(f"{job['id']} {job['status']}" + (" (cancelling)" if asked else ""))
    return 0


def _decide(decision: str) -> Callable[[Api, argparse.Namespace], int]:
    def handler(api: Api, args: argparse.Namespace) -> int:
        job = api.call("POST", f"/api/kilo/job/{args.id}/{decision}")
        if args.json:
            _print_json(job)
        else:
            print(f"{job['id']} {job['status']} ({(job.get('approval') or {}).get('decision') or decision})")
        return 0

    return handler


def _generate(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"prompt": args.prompt}
    body.update(
        {k: v for k, v in (("model", args.model), ("system", args.system), ("maxTokens", args.max_tokens)) if v}
    )
    text: list[str] = []
    for event in api.stream("POST", "/api/kilo/generate-stream", body):
        if event.kind == "delta":
            text.append(event.data["text"])
            if not args.json:
                sys.stdout.write(event.data["text"])
                sys.stdout.flush()
        elif event.kind == "done":
            if args.json:
                _print_json({"text": "".join(text), **event.data})
            else:
                usage = event.data["usage"]
                cost = usage.get("costUsd")
                sys.stdout.write("\n")
                print(
                    f"-- {event.data['model']} {usage['totalTokens']} tokens"
                    + (f" ${cost:.6f}" if cost is not None else ""),
                    file=sys.stderr,
                )
            return 0
        elif event.kind == "error":
            sys.stdout.write("\n")
            print(f"kilo-bridge: {event.data['error']['message']}", file=sys.stderr)
            return EXIT_REFUSED
    print("kilo-bridge: the stream ended without its last event", file=sys.stderr)
    return EXIT_REFUSED


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _me(api: Api, args: argparse.Namespace) -> int:
    me = api.call("GET", "/api/kilo/me")
    if args.json:
        _print_json(me)
        return 0
    key = me["key"]
    budget = _usd(key["budgetUsd"]) + (f" per {key['budgetPeriod']}" if key.get("budgetPeriod") else "")
    rows = [
        ("key", f"{key['name']} ({key['id']})" + (" REVOKED" if key["revoked"] else "")),
        ("budget", budget if key["budgetUsd"] is not None else "none"),
        ("this period", f"{_usd(key['spentThisPeriodUsd'])}, resets {key['periodResetsAt']}")
        if key.get("budgetPeriod")
        else None,
        ("spent", f"{_usd(key['spentUsd'])} in all, {_usd(key['reservedUsd'])} held by calls and jobs in flight"),
        ("models", ", ".join(key["models"]) if key.get("models") else "any"),
        ("limits", f"rpm {key['rpm'] or '-'}, tpm {key['tpm'] or '-'}, jobs {key['maxJobs'] or '-'}"),
        ("in flight", f"{me['openCalls']} calls, {len(me['unfinishedJobs'])} jobs"),
    ]
    for row in rows:
        if row is not None:
            print(f"{row[0] + ':':<13}{row[1]}")
    for job in me["unfinishedJobs"]:
        print(f"  job {job['id']}  {job['status']:<8} {job['agent']}")
    for day, models in me["usage"].items():
        for model, f in models.items():
            print(f"{day}  {model:<36} {f['requests']:>6} calls {f['tokens']:>9} tokens  {_usd(f['spendUsd'])}")
    return 0


HANDLERS = {
    "me": _me,
    "submit": _submit,
    "logs": _logs,
    "list": _list,
    "show": _show,
    "cancel": _cancel,
    "approve": _decide("approve"),
    "reject": _decide("reject"),
    "generate": _generate,
    **profiles.HANDLERS,
    **triggers.HANDLERS,
    **schedules.HANDLERS,
}
