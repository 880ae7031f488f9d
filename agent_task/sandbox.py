"""The OS sandbox around the agent process (the CLI's own permissions are one layer, not the only one).

`AGENT_SANDBOX`:
- `bwrap`: bubblewrap. The system directories read-only, a few files of /etc, the CLI's install read-only,
  the checkout read-write (read-only for report-only agents), the job's git directory read-only, a private
  HOME and /tmp that go with the job; nothing else of the host (no server files, artifacts, other jobs).
  Its own user, pid, ipc, uts and network namespaces, no capabilities, a new session (no terminal injection).
  Its network is its own loopback alone: nothing of the host's (Redis, the bridge, other loopback servers,
  the outside); the runner's door (agent_task/door.py: the model endpoint, the egress proxy) comes in as
  unix sockets bound into it.
- `user`: the agent as its own unprivileged user (`AGENT_USER`, made in the image) with the minimal
  environment the runner builds: it cannot read the runner's files or environment (`/proc/PID/environ`),
  where the container's credentials live. For Fargate, whose seccomp profile forbids new namespaces; it
  needs a runner running as root, and one job per container.
- `auto`: `bwrap` where it works; else the job fails with a reason naming the setting, never unsandboxed.
- `none`: no sandbox (your own repositories on your own machine only).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# bwrap's own user namespace maps the runner's uid to this one ("nobody": it has a passwd entry).
SANDBOX_UID = 65534
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc, and nothing else of it (no shadow, no host keys, no machine config).
ETC_FILES = (
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "protocols",
    "services",
    "localtime",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "alternatives",
    "mime.types",
    "os-release",
)


class SandboxUnavailable(Exception):
    """The configured sandbox cannot run here; the message says why and which setting to change."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    mode: str  # "bwrap" | "user" | "none"
    bwrap: str = "bwrap"
    user: tuple[int, int] | None = None  # (uid, gid) for "user"
    read_only: tuple[str, ...] = field(default_factory=tuple)
    cli: str = ""  # the CLI by its real path (what the sandbox binds, not the symlinks to it)
    tmp_mb: int = 0  # the size of the private /tmp and /var/tmp (RAM-backed tmpfs); 0: the kernel's default

    def wrap(
        self,
        argv: list[str],
        *,
        cwd: Path,
        writable: list[Path],
        readable: list[Path],
        repo_writable: bool,
        sockets: dict[str, str] | None = None,
    ) -> list[str]:
        """argv run inside the sandbox; cwd is the checkout (writable/readable: the agent's own paths; sockets:
        the door's unix sockets, host path → path inside)."""
        if self.mode == "none":
            return argv
        if self.mode == "user":
            assert self.user is not None
            uid, gid = self.user
            return [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--no-new-privs",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
                *argv,
            ]
        args = [
            self.bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--unshare-cgroup-try",
            "--hostname",
            "kilo-agent",
        ]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for name in ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        size = ["--size", str(self.tmp_mb << 20)] if self.tmp_mb else []  # bwrap: --size applies to the next --tmpfs
        private_tmp = [*size, "--tmpfs", "/tmp", *size, "--tmpfs", "/var/tmp"]  # noqa: S108 - fresh, the sandbox's own
        args += ["--proc", "/proc", "--dev", "/dev", *private_tmp]
        for path in (*self.read_only, *map(str, readable)):
            args += ["--ro-bind", path, path]
        for place in writable:
            args += ["--bind", str(place), str(place)]
        for host_path, inside in (sockets or {}).items():
            args += ["--bind", host_path, inside]
        args += ["--bind" if repo_writable else "--ro-bind", str(cwd), str(cwd), "--chdir", str(cwd), "--", *argv]
        return args


def cli_install(cli: str) -> str:
    """What of the CLI's install the sandbox must see: the `node_modules` it lives in, else the file itself."""
    real = Path(os.path.realpath(cli))
    for parent in real.parents:
        if parent.name == "node_modules":
            return str(parent)
    return str(real)


@functools.lru_cache(maxsize=4)
def bwrap_problem(bwrap: str) -> str | None:
    """Why the bubblewrap at this path cannot make our sandbox here (None: it can)."""
    probe = Sandbox("bwrap", bwrap).wrap(["/bin/true"], cwd=Path("/"), writable=[], readable=[], repo_writable=False)
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap did not run: {exc}"
    if done.returncode != 0:
        return "bubblewrap cannot create its namespaces here: " + done.stderr.decode(errors="replace").strip()[:300]
    return None


def resolve(mode: str, agent_user: str, cli: str) -> Sandbox:
    """The sandbox AGENT_SANDBOX asks for, or SandboxUnavailable saying why it cannot be had."""
    install, real_cli = (cli_install(cli),), os.path.realpath(cli)
    if mode in ("auto", "bwrap"):
        bwrap = shutil.which("bwrap")
        why = bwrap_problem(bwrap) if bwrap else "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
        if why is None and bwrap:
            return Sandbox("bwrap", bwrap, read_only=install, cli=real_cli)
        raise SandboxUnavailable(
            f"AGENT_SANDBOX={mode}: {why}. Install bubblewrap, or set AGENT_SANDBOX=user (the agent as its own "
            "unprivileged user; the runner must run as root) or AGENT_SANDBOX=none (no sandbox: trusted "
            "repositories only)"
        )
    if mode == "user":
        if os.geteuid() != 0:
            raise SandboxUnavailable(
                "AGENT_SANDBOX=user needs the runner to run as root, to start the agent as its user"
            )
        try:
            entry = pwd.getpwnam(agent_user)
        except KeyError:
            raise SandboxUnavailable(f"AGENT_SANDBOX=user: there is no user {agent_user!r} (AGENT_USER)") from None
        if entry.pw_uid == 0:
            raise SandboxUnavailable(f"AGENT_SANDBOX=user: AGENT_USER {agent_user!r} is root")
        return Sandbox("user", user=(entry.pw_uid, entry.pw_gid), cli=real_cli)
    return Sandbox("none", cli=real_cli)
