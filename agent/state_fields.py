"""Field parsers shared by the agent's strict JSON parsers (links, netfilter).

Each refuses anything that is not exactly the expected type and names the field in a
one-line FieldError: `links.domains[0].l3vni.vni: expected an integer 1-16777215, got 0`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, cast


class FieldError(ValueError):
    """Invalid desired state; the message is one line naming the field."""


def show(value: object) -> str:
    """A value for an error message: repr keeps it on one line, and it is cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def obj(value: object, where: str, fields: Collection[str] | None = None) -> Mapping[str, Any]:
    """An object; with `fields`, one without keys outside them: a misspelt key would
    otherwise silently mean a default."""
    if not isinstance(value, dict):
        raise FieldError(f"{where}: expected an object, got {show(value)}")
    if fields is not None:
        unknown = sorted(str(key) for key in value if key not in fields)
        if unknown:
            raise FieldError(f"{where}: unknown field {show(unknown[0])}")
    return cast(Mapping[str, Any], value)


def items(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise FieldError(f"{where}: expected a list, got {show(value)}")
    return value


def string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise FieldError(f"{where}: expected a string, got {show(value)}")
    return value


def boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"{where}: expected true or false, got {show(value)}")
    return value


def integer(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(f"{where}: expected an integer {low}-{high}, got {show(value)}")
    return value
