"""Kernel limits on every agent process tree: processes (`AGENT_MAX_PROCS`), memory without swap
(`AGENT_MAX_MEMORY_MB`), the size of one file (`AGENT_MAX_FILE_MB`) and the sandbox's private /tmp
(`AGENT_TMP_MB`, bubblewrap's `--size` on the tmpfs).

Processes and memory are held for the whole tree by a cgroup the runner makes for the run and the child joins
before it execs (so nothing it starts is ever outside it): cgroup v2 where the runner's cgroup may have
children with the `pids` and `memory` controllers, else the v1 `pids` and `memory` hierarchies where they are
mounted writable (this development machine: a hybrid layout whose v2 mount has no controllers). Without either
(Fargate: no writable cgroup) they fall back to per-process rlimits: RLIMIT_DATA for memory, and RLIMIT_NPROC,
which the kernel does not apply to root's processes (bubblewrap keeps the runner's kernel uid under the
sandbox's 65534), so it binds only the `user` sandbox's own user. One file's size is RLIMIT_FSIZE everywhere
(any uid). The job log's first runner lines say which mechanism holds each limit.

Which limit was hit is read from the kernel afterwards (the cgroup's `pids` refusals and OOM kills), from the
files the agent left (one at the size limit), and from the sandbox's /tmp measured inside it after the agent.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kilo_bridge.config import Settings

MB = 1 << 20
TMP_FULL_MARK = "kilo-bridge-limit: tmp full"
# Run inside the sandbox around the agent: after it ends, say on stderr when its /tmp was left (nearly) full.
# The agent could print the mark itself; it can only make its own job's log name a limit it did not hit.
TMP_REPORT = f"""
"$@"; rc=$?
set -- $(df -kP /tmp 2>/dev/null | tail -n 1)
[ -n "$4" ] && [ "$4" -lt 64 ] && echo "{TMP_FULL_MARK}" >&2
exit $rc
"""
_runs = itertools.count()
PREFIX = "kilo-agent-"


@dataclass(frozen=True, slots=True)
class Limits:
    procs: int
    memory_mb: int
    file_mb: int
    tmp_mb: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.agent_max_procs, settings.agent_max_memory_mb, settings.agent_max_file_mb, settings.agent_tmp_mb
        )


@dataclass(slots=True)
class Confinement:
    """One run's limits: how each is enforced, the child's join step, and what was hit."""

    limits: Limits
    cgroup: str = "none"  # "v2" | "v1" | "none"
    pids_dirs: list[Path] = field(default_factory=list)  # the cgroup directories the child joins
    memory_dirs: list[Path] = field(default_factory=list)
    nproc_binds: bool = False  # RLIMIT_NPROC applies (a non-root uid) when there is no cgroup
    own_uid: int | None = None  # the agent's own unprivileged uid (`user` sandbox: one job per container)

    @property
    def dirs(self) -> list[Path]:
        return list(dict.fromkeys([*self.pids_dirs, *self.memory_dirs]))

    def describe(self, sandbox_mode: str) -> str:
        lim = self.limits
        if self.cgroup != "none":
            procs = f"cgroup {self.cgroup} pids.max"
            mem = f"cgroup {self.cgroup} " + ("memory.max, no swap" if self.cgroup == "v2" else "memory limit, no swap")
        else:
            procs = "RLIMIT_NPROC" if self.nproc_binds else "NOT ENFORCED (no writable cgroup; RLIMIT_NPROC skips root)"
            mem = "RLIMIT_DATA, per process (no writable cgroup)"
        tmp = "tmpfs size" if sandbox_mode == "bwrap" else "not private (no bwrap): the host's /tmp"
        return (
            f"limits: processes {lim.procs} ({procs}); memory {lim.memory_mb} MB ({mem}); "
            f"one file {lim.file_mb} MB (RLIMIT_FSIZE); /tmp {lim.tmp_mb} MB ({tmp})"
        )

    def join(self) -> None:  # pragma: no cover - runs in the child between fork and exec
        """Move this (child) process into the run's cgroups and set its rlimits; exec'd programs inherit both."""
        for place in self.dirs:
            fd = os.open(place / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        size = self.limits.file_mb * MB
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        if self.cgroup == "none":
            memory = self.limits.memory_mb * MB
            resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
            resource.setrlimit(resource.RLIMIT_NPROC, (self.limits.procs, self.limits.procs))

    def hits(self, tail: list[str] | None = None) -> list[str]:
        """The limits the kernel held the run at, each named by its setting."""
        lim, hit = self.limits, []
        if any(_events(d / "pids.events").get("max", 0) > 0 for d in self.pids_dirs):
            hit.append(f"AGENT_MAX_PROCS ({lim.procs} processes): a process could not be started")
        memory_events = ("memory.events", "memory.oom_control")  # v2, v1
        if any(_events(d / name).get("oom_kill", 0) > 0 for d in self.memory_dirs for name in memory_events):
            hit.append(f"AGENT_MAX_MEMORY_MB ({lim.memory_mb} MB): a process was killed for memory")
        if tail and any(TMP_FULL_MARK in line for line in tail):
            hit.append(f"AGENT_TMP_MB ({lim.tmp_mb} MB): the private /tmp was full")
        return hit

    def kill_all(self) -> None:
        """SIGKILL whatever of the run is still alive, wherever it went (its own session, another group):
        everything in its cgroup, else (no cgroup) every process of the agent's own uid."""
        if not self.dirs and self.own_uid:
            for _ in range(50):
                pids = _pids_of_uid(self.own_uid)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        for place in self.dirs:
            for _ in range(50):
                pids = _pids(place)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)

    def alive(self) -> list[int]:
        return sorted({pid for place in self.dirs for pid in _pids(place)})

    def close(self) -> None:
        self.kill_all()
        for place in self.dirs:
            for _ in range(100):
                try:
                    place.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # a killed process not yet gone from the cgroup
                    self.kill_all()
                    os.sched_yield()


def _events(path: Path) -> dict[str, int]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def _pids(place: Path) -> list[int]:
    try:
        return [int(p) for p in (place / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _pids_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    found.append(int(entry.name))
    return found


def _mounts() -> tuple[Path | None, dict[str, Path]]:
    """The cgroup v2 mount and the v1 mount of each controller (pids, memory), from /proc/self/mountinfo."""
    v2: Path | None = None
    v1: dict[str, Path] = {}
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = [*right.split(), "", "", ""][:3]
            point = Path(left.split()[4])
            if fstype == "cgroup2" and v2 is None:
                v2 = point
            elif fstype == "cgroup":
                for controller in ("pids", "memory"):
                    if controller in options.split(","):
                        v1.setdefault(controller, point)
    return v2, v1


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy: '' for v2, else the controller names."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    return out


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _sweep(parent: Path) -> None:
    """Remove the empty cgroups of runners that died before removing theirs (named `kilo-agent-<job>-<pid>-<n>`)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            pid = entry.name.rsplit("-", 2)[-2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                with contextlib.suppress(OSError):  # still holds processes: left for their end
                    os.rmdir(entry.path)


def _v2(limits: Limits, name: str) -> Path | None:
    mount, _ = _mounts()
    own = _own_cgroups().get("")
    if mount is None or own is None:
        return None
    base = mount / own.lstrip("/")
    try:
        enabled = (base / "cgroup.subtree_control").read_text().split()
        if not {"pids", "memory"} <= set(enabled):
            _write(base / "cgroup.subtree_control", "+pids +memory")  # refused where the cgroup has processes
        _sweep(base)
        place = base / name
        place.mkdir()
    except OSError:
        return None
    try:
        _write(place / "pids.max", str(limits.procs))
        _write(place / "memory.max", str(limits.memory_mb * MB))
        if (place / "memory.swap.max").exists():
            _write(place / "memory.swap.max", "0")
    except OSError:
        with contextlib.suppress(OSError):
            place.rmdir()
        return None
    return place


def _v1(limits: Limits, name: str) -> tuple[Path, Path] | None:
    _, mounts = _mounts()
    own = _own_cgroups()
    made: list[Path] = []
    try:
        pids = mounts["pids"] / own["pids"].lstrip("/") / name
        memory = mounts["memory"] / own["memory"].lstrip("/") / name
        for place in (pids, memory):
            _sweep(place.parent)
            place.mkdir()
            made.append(place)
        _write(pids / "pids.max", str(limits.procs))
        _write(memory / "memory.limit_in_bytes", str(limits.memory_mb * MB))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # memory + swap: no swap beyond the limit
            _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_mb * MB))
    except (KeyError, OSError):
        for place in made:
            with contextlib.suppress(OSError):
                place.rmdir()
        return None
    return pids, memory


@contextlib.contextmanager
def confined(settings: Settings, job_id: str, sandbox_uid: int | None) -> Iterator[Confinement]:
    """The run's limits for as long as its processes live; afterwards its cgroups are emptied and removed.
    `sandbox_uid`: the kernel uid the agent runs as (None: the runner's own)."""
    limits = Limits.of(settings)
    name = f"{PREFIX}{job_id}-{os.getpid()}-{next(_runs)}"
    box = Confinement(limits)
    if (v2 := _v2(limits, name)) is not None:
        box.cgroup, box.pids_dirs, box.memory_dirs = "v2", [v2], [v2]
    elif (v1 := _v1(limits, name)) is not None:
        box.cgroup, box.pids_dirs, box.memory_dirs = "v1", [v1[0]], [v1[1]]
    else:
        box.nproc_binds = (sandbox_uid if sandbox_uid is not None else os.geteuid()) != 0
        box.own_uid = sandbox_uid if sandbox_uid else None
    try:
        yield box
    finally:
        box.close()


def reporting_tmp(argv: list[str]) -> list[str]:
    """argv run inside the sandbox with its /tmp measured after it (see TMP_REPORT)."""
    return ["/bin/sh", "-c", TMP_REPORT, "kb-limits", *argv]


def oversized(root: Path, limit_bytes: int, max_entries: int = 1_000_000) -> list[tuple[str, int]]:
    """Regular files under root at or over limit_bytes (what RLIMIT_FSIZE stopped, or bigger), by lstat:
    links are never followed, nothing is read. `.git` directories are not the change and are skipped."""
    found: list[tuple[str, int]] = []
    stack, seen = [root], 0
    while stack and seen < max_entries:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name != ".git":
                    stack.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode) and st.st_size >= limit_bytes:
                found.append((os.path.relpath(entry.path, root), st.st_size))
    return found
