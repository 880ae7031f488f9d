"""A secret in every form it can take: a profileEnv value with a newline, `"` and `\\`, and a multi-line private
key, as an agent leaks them (its stdout events, its stderr line by line, a file it commits). Through the real
runner: the push is refused (`secret_in_diff`), nothing reaches the remote, and no form is in the log."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kilo_bridge.config import Settings
from kilo_bridge.platform.security import REDACTED, Redactor
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import ROOT

# A 4-line key (a fake: random bytes, no key at all), the shape a PEM private key has.
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBsk2VzdC1vbmx5LWZha2Uta2V5LW5vdC1yZWFsLTAxMjM0NTY3ODkAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
ODD = 'sk-test-quote"back\\slash\nnext-line-part'


def test_every_form_of_a_value_is_redacted_and_found() -> None:
    redactor = Redactor([PRIVATE_KEY, ODD])
    line = PRIVATE_KEY.splitlines()[1]
    forms = {
        "raw": PRIVATE_KEY,
        "json-escaped": json.dumps(PRIVATE_KEY)[1:-1],
        "json-escaped twice": json.dumps(json.dumps(ODD))[1:-1],
        "json-escaped odd": json.dumps(ODD)[1:-1],
        "one line in a diff": f"+{line}\n",
        "one line, json-escaped": json.dumps({"msg": f"stderr {line}"}),
        "second line of a value": "next-line-part",
    }
    for shift in range(3):  # base64, at each alignment, standard and URL-safe, of the value and of one line
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms[f"b64 {shift} {encode.__name__}"] = encode(b"x" * shift + PRIVATE_KEY.encode()).decode()
            forms[f"b64 line {shift} {encode.__name__}"] = encode(b"x" * shift + line.encode() + b"!").decode()
    for name, text in forms.items():
        assert redactor.found_in(text), name
        assert line not in redactor(text) and "back\\slash" not in redactor(text), name
        assert REDACTED in redactor(text), name
    # the PEM armor alone is no secret: another key's diff may carry it
    assert not redactor.found_in("-----BEGIN OPENSSH PRIVATE KEY-----")


@pytest.mark.slow
def test_a_private_key_from_profile_env_is_not_pushed_nor_logged_in_any_form(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    # The agent copies the key into the checkout, then prints every LEAK_ value (stdout events, stderr).
    wrapper = tmp_path / "kilo-copies"
    wrapper.write_text(
        '#!/bin/sh\ncase "$1" in run) printf "%s\\n" "$LEAK_KEY" > deploy_key ;; esac\n'
        f'exec {sys.executable} {ROOT / "tests/fakes/fake_kilo.py"} "$@"\n'
    )
    wrapper.chmod(0o755)
    settings = job_settings(kilo_cli=str(wrapper))
    client = http_client(base_url=serve(settings), timeout=10)
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "LEAK_KEY": PRIVATE_KEY, "LEAK_ODD": ODD, "FAKE_KILO_MODE": "leak"},
    )
    job = wait_job(client, client.post("/api/kilo/run-agent", json=body).json()["jobId"])
    assert job["status"] == "failed" and job["reason"] == "secret_in_diff", job
    pushed = subprocess.run(
        ["git", "-C", str(fake_github.root / "acme" / "widgets.git"), "log", "--all", "-p"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "deploy_key" not in pushed and fake_github.pulls == []
    log = client.get(f"/api/kilo/job/{job['id']}/artifacts/log.jsonl").text
    live = client.get(f"/api/kilo/job/{job['id']}/logs").text
    assert "LEAK_KEY=[REDACTED]" in log  # the agent did print it
    for text in (log, live, json.dumps(job)):
        for line in [*PRIVATE_KEY.splitlines()[1:3], "sk-test-quote", "next-line-part"]:
            assert line not in text.replace("LEAK_", ""), line


def test_the_longest_form_wins_where_secrets_overlap() -> None:
    redactor = Redactor(["sk-test-abc", "sk-test-abcdef-0123", "sk-test-abd"])
    assert redactor("a sk-test-abcdef-0123 b sk-test-abc c sk-test-abd") == "a [REDACTED] b [REDACTED] c [REDACTED]"
    assert redactor("sk-test-abcdef-012") == "[REDACTED]def-012"  # the shorter secret inside, the rest is no secret
