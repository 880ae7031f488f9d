"""The agent catalogue: each agent's Kilo definition, its permissions and its prompt."""

from __future__ import annotations

from kilo_bridge.config import load_settings
from kilo_bridge.jobs.catalogue import load_catalog
from kilo_bridge.jobs.record import JobRecord


def test_catalogue_definitions_and_permissions() -> None:
    catalog = load_catalog(load_settings().agents_path)
    assert {"apply-patch-and-pr", "review"} <= set(catalog)
    review = catalog["review"].definition.read_text()
    assert "edit: deny" in review and "bash: deny" in review
    for spec in catalog.values():
        assert spec.definition.read_text().startswith("---\n")
        assert spec.requires_prompt or spec.default_prompt


def test_each_agents_network_is_the_catalogues_word() -> None:
    catalog = load_catalog(load_settings().agents_path)
    networks = {name: spec.network for name, spec in catalog.items()}
    assert networks == {
        "review": "none",
        "apply-patch-and-pr": "none",
        "build": "allowlist",
        "dependency-update": "allowlist",
        "deploy": "allowlist",
    }


def test_the_deploy_agent_prepares_and_never_deploys_itself() -> None:
    deploy = load_catalog(load_settings().agents_path)["deploy"]
    assert (deploy.after, deploy.read_only, deploy.requires_prompt) == ("deploy", False, False)
    text = deploy.definition.read_text()
    assert "webfetch: deny" in text and "PASSED" in text and "Do not deploy" in text


def test_a_deploy_step_is_part_of_its_record_and_of_nothing_else() -> None:
    step = {"command": "./ship.sh", "allow": ["x.test"]}
    record = JobRecord("job_x", "queued", "deploy", "u", 1000, 1, deploy=step, require_approval=True)
    back = JobRecord.decode(record.fields() | {"phase": "awaiting_approval", "status": "running"})
    assert (back.deploy, back.require_approval, back.shown_status) == (step, True, "awaiting_approval")
    decided = JobRecord.decode(
        record.fields() | {"phase": "awaiting_approval", "status": "running", "decision": "approved"}
    )
    assert decided.shown_status == "running"  # approved: its runner moves on to the deploy
    assert "deploy" not in JobRecord("job_x", "queued", "review", "u", 1000, 1).fields()


def test_a_jobs_own_network_is_kept_in_its_record() -> None:
    record = JobRecord("job_x", "queued", "review", "https://github.com/a/b", 1000, 1, network="allowlist")
    assert JobRecord.decode(record.fields()).network == "allowlist"
    assert JobRecord.decode(JobRecord("job_x", "queued", "review", "u", 1000, 1).fields()).network is None
