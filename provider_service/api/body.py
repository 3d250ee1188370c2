"""Reading a JSON request body field by field, with one-line errors that name the field."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import request

from provider_service.errors import BadRequest

T = TypeVar("T")
_MISSING: Any = object()


def request_json() -> Any:
    """The request's JSON, refused whole if any string in it could not be stored as text.

    NUL bytes and lone surrogates are valid JSON, but PostgreSQL refuses the first,
    UTF-8 the second, and SQLite would store both: one rule for both databases.
    """
    try:
        data = json.loads(request.get_data(cache=False))
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    _check_strings(data)
    return data


def _check_strings(data: Any) -> None:
    pending = [data]  # a loop, not recursion: the depth is the sender's choice
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise BadRequest("the request body holds a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("the request body holds text that is not valid UTF-8") \
                    from None


class Body:
    """A JSON object from a request; unknown fields are refused so typos are not ignored."""

    def __init__(self, data: dict[str, Any], allowed: Iterable[str], where: str = "") -> None:
        self._data = data
        self._where = where
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise BadRequest(f"{where}unknown field {unknown[0]!r}")

    @classmethod
    def from_request(cls, allowed: Iterable[str]) -> Body:
        data = request_json()
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return cls(data, allowed)

    @classmethod
    def nested(cls, value: object, allowed: Iterable[str], where: str) -> Body:
        if not isinstance(value, dict):
            raise BadRequest(f"{where}: expected a JSON object")
        return cls(value, allowed, where + ".")

    def has(self, field: str) -> bool:
        return self._data.get(field) is not None

    def raw(self, field: str) -> Any:
        return self._data.get(field)

    def get(self, field: str, parse: Callable[[Any, str], T], default: T = _MISSING) -> T:
        """The parsed field; `default` when absent or null; BadRequest when required."""
        value = self._data.get(field)
        # CloudStack omits optional keys or sends them blank; both mean "not given".
        absent = value is None or (value == "" and default is not _MISSING)
        if absent and default is _MISSING:
            raise BadRequest(f"{self._where}{field}: required")
        return default if absent else parse(value, self._where + field)

    def items(self, field: str) -> list[Any]:
        value = self._data.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadRequest(f"{self._where}{field}: expected a JSON list")
        return value
