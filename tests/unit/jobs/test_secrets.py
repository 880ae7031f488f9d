"""Sealing a job's profileEnv with the local key: a private, stable key file; a seal opens on its own job only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kilo_bridge.config import load_settings
from kilo_bridge.jobs.secrets import LocalBox


def test_local_key_file_is_private_and_stable(tmp_path: Path) -> None:
    settings = load_settings(job_secrets_key_file=str(tmp_path / "k" / "job.key"))
    first, second = LocalBox.from_settings(settings), LocalBox.from_settings(settings)
    assert stat.S_IMODE((tmp_path / "k" / "job.key").stat().st_mode) == 0o600
    assert second.open("job_x", first.seal("job_x", {"A": "b"})) == {"A": "b"}


def test_sealed_secrets_are_bound_to_their_job(tmp_path: Path) -> None:
    from cryptography.exceptions import InvalidTag

    box = LocalBox.from_settings(load_settings(job_secrets_key_file=str(tmp_path / "job-secrets.key")))
    sealed = box.seal("job_" + "1" * 24, {"GITHUB_TOKEN": "ghp_abc"})
    assert "ghp_abc" not in sealed
    assert box.open("job_" + "1" * 24, sealed) == {"GITHUB_TOKEN": "ghp_abc"}
    with pytest.raises(InvalidTag):
        box.open("job_" + "2" * 24, sealed)  # copied onto another job: does not open


def test_a_profile_seal_opens_only_as_that_profile(tmp_path: Path) -> None:
    from cryptography.exceptions import InvalidTag

    box = LocalBox.from_settings(load_settings(job_secrets_key_file=str(tmp_path / "job-secrets.key")))
    sealed = box.seal("open/ci", {"A": "b"}, "profile")
    assert box.open("open/ci", sealed, "profile") == {"A": "b"}
    for name, scope in (("open/other", "profile"), ("open/ci", "jobId")):
        with pytest.raises(InvalidTag):
            box.open(name, sealed, scope)  # another profile's, or a job's: does not open
