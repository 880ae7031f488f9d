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
    }


def test_a_jobs_own_network_is_kept_in_its_record() -> None:
    record = JobRecord("job_x", "queued", "review", "https://github.com/a/b", 1000, 1, network="allowlist")
    assert JobRecord.decode(record.fields()).network == "allowlist"
    assert JobRecord.decode(JobRecord("job_x", "queued", "review", "u", 1000, 1).fields()).network is None
