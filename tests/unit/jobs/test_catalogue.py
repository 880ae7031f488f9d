"""The agent catalogue: each agent's Kilo definition, its permissions and its prompt."""

from __future__ import annotations

from kilo_bridge.config import load_settings
from kilo_bridge.jobs.catalogue import load_catalog


def test_catalogue_definitions_and_permissions() -> None:
    catalog = load_catalog(load_settings().agents_path)
    assert {"apply-patch-and-pr", "review"} <= set(catalog)
    review = catalog["review"].definition.read_text()
    assert "edit: deny" in review and "bash: deny" in review
    for spec in catalog.values():
        assert spec.definition.read_text().startswith("---\n")
        assert spec.requires_prompt or spec.default_prompt
