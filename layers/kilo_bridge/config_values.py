"""What a setting is and how a value for it is checked: the field declarations `Settings` is written with
(`setting(default, ge=…)`), each field's `Setting` read from its annotation, and the conversion of a value (an
environment string or a Python value) to the field's type within its bounds, plus the checks of the URL and id
fields. The messages keep pydantic's wording (config.py says why there is no pydantic here)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


class SecretStr:
    """A secret setting: shown as stars (str, repr, logs); `get_secret_value()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def setting(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> Any:
    """A field with bounds: numbers `ge`/`gt`/`le`, strings `min_length`/`max_length`."""
    bounds = {"ge": ge, "gt": gt, "le": le, "min_length": min_length, "max_length": max_length}
    return Bounded(default, {k: v for k, v in bounds.items() if v is not None})


class Bounded:
    __slots__ = ("bounds", "default")

    def __init__(self, default: Any, bounds: dict[str, float]) -> None:
        self.default, self.bounds = default, bounds


class Setting:
    """One field of Settings: its name, its type as annotated (`int`, `str | None`, `Literal['a', 'b']`...),
    default and bounds."""

    __slots__ = ("bounds", "choices", "default", "kind", "name", "optional")

    def __init__(self, name: str, annotation: str, default: Any, bounds: dict[str, float]) -> None:
        self.name, self.default, self.bounds = name, default, bounds
        self.optional = annotation.endswith(" | None")
        self.kind = annotation.removesuffix(" | None")
        self.choices: tuple[str, ...] = ()
        if self.kind.startswith("Literal["):
            self.choices = tuple(c.strip().strip("'\"") for c in self.kind[len("Literal[") : -1].split(","))
            self.kind = "Literal"
        if self.kind not in ("int", "float", "str", "bool", "SecretStr", "Literal"):
            raise TypeError(f"Settings.{name}: unsupported type {annotation!r}")


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials in the URL")
    return value.rstrip("/")


class Invalid(ValueError):
    """One setting's problem, worded as pydantic words it."""


def _public_url(value: str | None) -> str | None:
    if not value:  # the template passes "" when no custom domain is set
        return None
    if urlsplit(value).query or urlsplit(value).fragment:
        raise ValueError("must be a base URL without a query or fragment")
    return _check_http_url(value)


def _http_url(value: str | None) -> str | None:
    return None if value is None else _check_http_url(value)


def _key_id(value: str | None) -> str | None:
    if not value:  # the template passes "" when the parameter is left empty
        return None
    if not re.fullmatch(r"[0-9a-f]{12}", value):
        raise ValueError("an API key's id: the 12 hex digits `kilo-bridge keys list` shows")
    return value


def _redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
    return value


CHECKS: dict[str, Callable[[Any], Any]] = {
    "public_base_url": _public_url,
    "kilo_gateway_base": _http_url,
    "kilo_balance_url": _http_url,
    "bridge_url": _http_url,
    "redis_url": _redis_url,
    "github_app_key_id": _key_id,
}
_TRUE = frozenset(("1", "on", "t", "true", "y", "yes"))
_FALSE = frozenset(("0", "off", "f", "false", "n", "no"))


def fields_of(cls: type) -> dict[str, Setting]:
    """The Setting of each annotated attribute of `cls` (annotations are text: `from __future__ import
    annotations`), in order; the class keeps none of their defaults (instances have every attribute)."""
    fields = {}
    for name, annotation in cls.__annotations__.items():
        if name.startswith("_"):
            continue
        declared = cls.__dict__.get(name)
        default, bounds = (declared.default, declared.bounds) if isinstance(declared, Bounded) else (declared, {})
        fields[name] = Setting(name, annotation, default, bounds)
        if name in cls.__dict__:
            delattr(cls, name)
    return fields


def convert(f: Setting, value: Any) -> Any:
    """`value` (an environment string or a Python value) as the field's type, within its bounds."""
    kind, bounds = f.kind, f.bounds
    if value is None and f.optional:
        return None
    if kind == "Literal":
        if value not in f.choices:
            raise Invalid("Input should be " + " or ".join(repr(c) for c in f.choices))
        return value
    if kind == "SecretStr":
        if isinstance(value, SecretStr):
            return value
        return SecretStr(_text(value, bounds))
    if kind == "str":
        return _text(value, bounds)
    if kind == "bool":
        return _flag(value)
    number: float = _integer(value) if kind == "int" else _number(value)
    for bound, ok, word in (("ge", number.__ge__, "greater than or equal to"), ("gt", number.__gt__, "greater than"),
                            ("le", number.__le__, "less than or equal to")):  # fmt: skip
        if bound in bounds and not ok(bounds[bound]):
            raise Invalid(f"Input should be {word} {bounds[bound]}")
    return number


def _text(value: Any, bounds: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("Input should be a valid string")
    if len(value) < bounds.get("min_length", 0):
        n = bounds["min_length"]
        raise Invalid(f"String should have at least {n} character{'s' if n != 1 else ''}")
    if "max_length" in bounds and len(value) > bounds["max_length"]:
        n = bounds["max_length"]
        raise Invalid(f"String should have at most {n} character{'s' if n != 1 else ''}")
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Invalid("Input should be a valid boolean, unable to interpret input")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise Invalid("Input should be a valid integer, got a number with a fractional part")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise Invalid("Input should be a valid integer, unable to parse string as an integer") from None
            if number.is_integer():
                return int(number)
            raise Invalid("Input should be a valid integer, got a number with a fractional part") from None
    raise Invalid("Input should be a valid integer")


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise Invalid("Input should be a valid number, unable to parse string as a number") from None
    raise Invalid("Input should be a valid number")
