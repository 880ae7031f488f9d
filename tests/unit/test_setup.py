"""The two commands do the set-up: `make run` installs what serving needs and no test tool-chain, `make test`
the rest, and the system packages are installed with apt as root or named with the command to run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system_packages.sh"


def _dry_run(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a machine with nothing installed yet (a virtualenv path that does not exist,
    so every stamp is out of date; npm stamps are looked up under the checkout and may exist)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_make_run_installs_the_server_and_not_the_test_tool_chain(tmp_path: Path) -> None:
    plan = _dry_run("run", tmp_path)
    assert "--require-hashes -r layers/requirements.txt" in plan and "--no-deps -e ." in plan
    assert "requirements/test.lock" not in plan and "clients" not in plan and "chromium" not in plan
    assert "system_packages.sh --warn bubblewrap socat" in plan


def test_make_test_installs_the_tool_chain_and_the_system_packages(tmp_path: Path) -> None:
    plan = _dry_run("test", tmp_path)
    assert "--require-hashes -r layers/requirements.txt" in plan
    assert "--require-hashes -r requirements/test.lock" in plan
    assert "system_packages.sh bubblewrap socat chromium" in plan


def test_ci_is_make_validate_and_make_test() -> None:
    commands = [
        line.split("#")[0].strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "export CI=true", "make validate", "make test"]


def _path_with(tmp_path: Path, *, apt: bool) -> dict[str, str]:
    """A PATH with the basic tools and, when asked, a stand-in `apt-get` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "bash", "env"):
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    if apt:
        (bin_dir / "apt-get").write_text(f'#!/usr/bin/bash\necho "$*" >> {tmp_path}/apt.log\n')
        (bin_dir / "apt-get").chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def test_missing_packages_are_installed_with_apt_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        return  # the other branch is tested below; this one needs root
    done = subprocess.run(
        ["/usr/bin/bash", str(SCRIPT), "kb-absent-package"],
        env=_path_with(tmp_path, apt=True),
        text=True,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends kb-absent-package",
    ]


def test_without_apt_one_line_names_the_packages_and_the_target_fails(tmp_path: Path) -> None:
    env = _path_with(tmp_path, apt=False)
    done = subprocess.run(
        ["/usr/bin/bash", str(SCRIPT), "kb-absent-package"], env=env, text=True, capture_output=True, check=False
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "missing system packages: kb-absent-package" in done.stderr
    warned = subprocess.run(
        ["/usr/bin/bash", str(SCRIPT), "--warn", "kb-absent-package"],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )
    assert warned.returncode == 0 and "kb-absent-package" in warned.stderr


def test_present_packages_install_nothing(tmp_path: Path) -> None:
    env = _path_with(tmp_path, apt=True)
    (Path(env["PATH"]) / "socat").symlink_to("/usr/bin/true")
    done = subprocess.run(["/usr/bin/bash", str(SCRIPT), "socat"], env=env, text=True, capture_output=True, check=False)
    assert done.returncode == 0 and not (tmp_path / "apt.log").exists()
