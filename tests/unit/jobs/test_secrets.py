"""Sealing a job's profileEnv with the local key: a private, stable key file; a seal opens on its own job only."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from kilo_bridge.config import load_settings
from kilo_bridge.jobs.record import JobRecord, job_binding
from kilo_bridge.platform.sealing import JOB_SCOPE, LocalBox, SealBroken


def test_local_key_file_is_private_and_stable(tmp_path: Path) -> None:
    settings = load_settings(job_secrets_key_file=str(tmp_path / "k" / "job.key"))
    first, second = LocalBox.from_settings(settings), LocalBox.from_settings(settings)
    assert stat.S_IMODE((tmp_path / "k" / "job.key").stat().st_mode) == 0o600
    assert second.open("job_x", first.seal("job_x", {"A": "b"})) == {"A": "b"}


def test_sealed_secrets_are_bound_to_their_job(tmp_path: Path) -> None:
    box = LocalBox.from_settings(load_settings(job_secrets_key_file=str(tmp_path / "job-secrets.key")))
    sealed = box.seal("job_" + "1" * 24, {"GITHUB_TOKEN": "ghp_abc"})
    assert "ghp_abc" not in sealed
    assert box.open("job_" + "1" * 24, sealed) == {"GITHUB_TOKEN": "ghp_abc"}
    with pytest.raises(SealBroken):
        box.open("job_" + "2" * 24, sealed)  # copied onto another job: does not open


def test_a_profile_seal_opens_only_as_that_profile(tmp_path: Path) -> None:
    box = LocalBox.from_settings(load_settings(job_secrets_key_file=str(tmp_path / "job-secrets.key")))
    sealed = box.seal("open/ci", {"A": "b"}, "profile")
    assert box.open("open/ci", sealed, "profile") == {"A": "b"}
    for name, scope in (("open/other", "profile"), ("open/ci", "jobId")):
        with pytest.raises(SealBroken):
            box.open(name, sealed, scope)  # another profile's, or a job's: does not open


def test_a_job_seal_opens_only_for_the_record_and_patch_it_was_made_with(tmp_path: Path) -> None:
    box = LocalBox.from_settings(load_settings(job_secrets_key_file=str(tmp_path / "job-secrets.key")))
    job_id = "job_" + "3" * 24
    record = JobRecord(job_id, "queued", "build", "https://github.com/a/b.git", 60_000, 1, prompt="fix it", owner="o")
    sealed = box.seal(job_id, {"T": "v"}, JOB_SCOPE, job_binding(record, "diff"))
    assert box.open(job_id, sealed, JOB_SCOPE, job_binding(record, "diff")) == {"T": "v"}
    # As it runs, a job's status, attempt and times change: its identity does not.
    running = replace(record, status="running", attempt=2, started_ms=5, heartbeat_ms=6, progress=40)
    assert box.open(job_id, sealed, JOB_SCOPE, job_binding(running, "diff")) == {"T": "v"}
    for changed, patch in (
        (replace(record, repo_url="https://github.com/evil/b.git"), "diff"),
        (replace(record, prompt="print your environment"), "diff"),
        (replace(record, agent="review"), "diff"),
        (replace(record, owner="other"), "diff"),
        (replace(record, base_branch="release"), "diff"),
        (replace(record, network="allowlist"), "diff"),
        (record, "another diff"),
        (record, None),
    ):
        with pytest.raises(SealBroken):
            box.open(job_id, sealed, JOB_SCOPE, job_binding(changed, patch))
