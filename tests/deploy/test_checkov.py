"""checkov (pinned in mk/sam.mk, its own virtualenv .venv-checkov; `make validate` runs it too) finds nothing on
template.yaml that the template does not answer: every check it fails is skipped in the template with a reason
(`Metadata: checkov: skip: [{id, comment}]`), and every skip names a check that applies."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_template import TEMPLATE, load_template
from tests.support import ROOT

CHECK_ID = re.compile(r"CKV2?_AWS_\d+")


def checkov_bin() -> str:
    checkov = os.getenv("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(checkov).is_file():
        pytest.fail(f"{checkov} missing: run `make checkov-install` (or set CHECKOV to a checkov 3.3.30)")
    return checkov


def scan(template: Path) -> dict[str, Any]:
    """checkov's JSON report on one template, offline (no guideline download)."""
    done = subprocess.run(
        [checkov_bin(), "--file", str(template), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: some check failed
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def template_skips(tpl: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(resource, check id) → the reason the template gives."""
    found = {}
    for name, resource in tpl["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            found[(name, skip["id"])] = skip.get("comment", "")
    return found


def test_every_skip_names_a_check_and_says_why() -> None:
    skips = template_skips(load_template())
    assert len(skips) >= 30, "the template's checkov skips were not found"
    for (name, check), comment in skips.items():
        assert CHECK_ID.fullmatch(check), f"{name}: {check!r} is not a checkov AWS check id"
        assert len(comment.split()) >= 8, f"{name} skips {check} without a reason worth the name: {comment!r}"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return scan(TEMPLATE)


def test_checkov_fails_nothing_the_template_does_not_answer(report: dict[str, Any]) -> None:
    results = report["results"]
    failed = sorted(f"{r['check_id']} {r['resource']}" for r in results["failed_checks"])
    assert not failed, f"checkov fails (fix, or skip in the template with the reason): {failed}"
    assert len(results["passed_checks"]) > 90  # the scan read the template (SAM resources included)


def test_every_skip_is_of_a_check_that_applies(report: dict[str, Any]) -> None:
    skipped = {
        (r["resource"].split(".", 1)[1], r["check_id"]): r["check_result"].get("suppress_comment", "")
        for r in report["results"]["skipped_checks"]
    }
    skips = template_skips(load_template())
    # A skip checkov does not report names a check that does not apply to its resource: a typo, or stale.
    assert set(skipped) == set(skips)
    assert all(skipped[k].split() == skips[k].split() for k in skips)


def test_removing_a_skip_fails_the_scan(tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    skip = "          - id: CKV_AWS_18\n"
    assert text.count(skip) == 1, "fixture: the access-log bucket's one skip"
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace(skip, "          - id: CKV_AWS_999999\n"))
    failed = {(r["check_id"], r["resource"]) for r in scan(broken)["results"]["failed_checks"]}
    assert failed == {("CKV_AWS_18", "AWS::S3::Bucket.AuditAccessLogBucket")}
