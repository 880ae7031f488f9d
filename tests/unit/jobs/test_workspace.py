"""A job's workspace is named by its id alone, under a work directory no other local user can have made."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from kilo_bridge.config import Settings
from kilo_bridge.jobs.record import new_job_id
from kilo_bridge.jobs.workspace import WorkdirUnsafe, fresh_workspace, remove_workspace, workspace_path


def test_the_workspace_is_derived_from_the_job_id_and_a_dead_attempts_is_replaced(tmp_path: Path) -> None:
    settings = Settings(job_workdir=str(tmp_path))
    job_id = new_job_id()
    first = fresh_workspace(settings, job_id)
    assert first == tmp_path / f"kb-job-{job_id}" == workspace_path(settings, job_id)
    (first / "agent").mkdir()
    (first / "agent" / "session.db").write_text("left by a killed runner")
    second = fresh_workspace(settings, job_id)
    assert second == first and list(second.iterdir()) == []
    assert oct(second.stat().st_mode & 0o777) == oct(0o700)
    assert remove_workspace(settings, job_id) and not second.exists()
    assert not remove_workspace(settings, job_id)


def test_only_a_job_id_names_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        workspace_path(Settings(job_workdir=str(tmp_path)), "../../etc")


def test_the_default_work_directory_must_be_this_users_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    settings = Settings(job_workdir=None)
    base = workspace_path(settings, new_job_id()).parent
    assert base == tmp_path / f"kilo-bridge-jobs-{os.getuid()}"
    assert oct(base.stat().st_mode & 0o777) == oct(0o711)  # passable to an agent user, not listable
    base.chmod(0o777)  # as if another user had made it writable for all
    with pytest.raises(WorkdirUnsafe):
        workspace_path(settings, new_job_id())
    base.rmdir()
    base.symlink_to(tmp_path)
    with pytest.raises(WorkdirUnsafe):
        workspace_path(settings, new_job_id())
