"""A runner on this machine: the name it claims its job under, and where it works (one directory per job,
named by the job id, under JOB_WORKDIR).

It holds the checkout, the runner's files and the agent's HOME (the CLI's session database, with output
not yet redacted), so it must always go: the runner removes it when the job ends, and whoever sees a runner
die without ending its job (its worker, or the job's next attempt) removes it from the id alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from kilo_bridge.config import Settings
from kilo_bridge.jobs.record import valid_job_id

PREFIX = "kb-job-"


def runner_name(pid: int) -> str:
    """What a runner's claim records as the job's `worker`, so its parent can tell its job from others'."""
    return f"{socket.gethostname()}:{pid}"


class WorkdirUnsafe(Exception):
    """The default work directory is not ours alone (another user made it, or it is a link)."""


def workdir(settings: Settings) -> Path:
    """JOB_WORKDIR, or a directory of this user's own in the system temp dir: names derived from job ids
    must not be claimable by another local user first. 0711: an agent running as its own user may pass
    through to its checkout, never list the other jobs."""
    if settings.job_workdir:
        return Path(settings.job_workdir)
    base = Path(tempfile.gettempdir()) / f"kilo-bridge-jobs-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
        base.chmod(0o711)  # whatever the umask
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise WorkdirUnsafe(f"{base} is not a directory of this user's alone; set JOB_WORKDIR")
    return base


def workspace_path(settings: Settings, job_id: str) -> Path:
    if not valid_job_id(job_id):
        raise ValueError("not a job id")
    return workdir(settings) / (PREFIX + job_id)


def remove_workspace(settings: Settings, job_id: str) -> bool:
    """Remove the job's workspace if there is one; True when something was removed."""
    path = workspace_path(settings, job_id)
    if not os.path.lexists(path):
        return False
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, onerror=_writable_then_retry)
    return True


def _writable_then_retry(func: Any, name: str, _exc: Any) -> None:
    """The agent may leave a directory it made read-only: make its parent writable and try once more."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(name), 0o700)
        if func in (os.rmdir, os.unlink, os.remove):
            func(name)
        elif func is os.open or func is os.scandir:  # an unreadable directory: open it up, then remove it
            os.chmod(name, 0o700)
            shutil.rmtree(name, ignore_errors=True)


def fresh_workspace(settings: Settings, job_id: str) -> Path:
    """An empty workspace for this attempt (what a dead earlier attempt left is removed first)."""
    remove_workspace(settings, job_id)
    path = workspace_path(settings, job_id)
    path.mkdir(mode=0o700)
    return path
