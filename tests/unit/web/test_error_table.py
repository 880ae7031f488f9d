"""Every error code the service can raise has its status in the one table (`web/errors.py`'s `STATUS_BY_CODE`):
a code missing there is answered 500, which says "our bug" for what is the caller's or the upstream's problem."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import kilo_bridge
from kilo_bridge.errors import BridgeError
from kilo_bridge.web.errors import STATUS_BY_CODE

PACKAGE = Path(kilo_bridge.__file__).parent
# A code given where the error is raised: `raise SomeError("…", code="x")`, `BridgeError(…, code="x")`.
RAISED_CODE = re.compile(r"(?:Error|Exceeded|Refused|Unavailable|Invalid\w*)\([^()]*?\bcode=\"([a-z_]+)\"", re.S)


def _subclasses(cls: type[BridgeError]) -> set[type[BridgeError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_error_class_code_has_a_status() -> None:
    for module in pkgutil.walk_packages([str(PACKAGE)], prefix="kilo_bridge."):
        if not module.name.endswith("__main__"):  # the command line, not a module to import
            importlib.import_module(module.name)
    codes = {sub.code for sub in _subclasses(BridgeError)} - {"error"}
    assert codes, "no BridgeError subclass found"
    missing = sorted(c for c in codes if c not in STATUS_BY_CODE)
    assert not missing, f"codes without a status in STATUS_BY_CODE: {missing}"


def test_every_code_given_at_a_raise_has_a_status() -> None:
    codes = {c for p in PACKAGE.rglob("*.py") for c in RAISED_CODE.findall(p.read_text())}
    missing = sorted(c for c in codes if c not in STATUS_BY_CODE)
    assert not missing, f"codes raised without a status in STATUS_BY_CODE: {missing}"
