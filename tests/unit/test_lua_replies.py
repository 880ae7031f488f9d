"""Every numeric first reply of a store's Lua script has its member in the enum the store decodes it into, and
every member is a reply the script gives: a new reply cannot reach callers as a bare number."""

from __future__ import annotations

import re
from enum import IntEnum
from pathlib import Path

import pytest

from kilo_bridge.jobs.store import Created
from kilo_bridge.usage.ledger import Verdict

PKG = Path(__file__).resolve().parents[2] / "layers" / "kilo_bridge"


@pytest.mark.parametrize(("script", "enum"), [("jobs/lua/create.lua", Created), ("usage/lua/admit.lua", Verdict)])
def test_each_reply_of_the_script_is_a_member(script: str, enum: type[IntEnum]) -> None:
    replies = {int(n) for n in re.findall(r"return \{(-?\d+)", (PKG / script).read_text())}
    assert replies == {member.value for member in enum}
