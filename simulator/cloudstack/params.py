"""A command's parameters as CloudStack's dispatcher sees them, and the errors they raise.

Plain names are case-insensitive (stored lower-cased). Object arrays arrive as
`name[index].field=value`: the array's name is case-insensitive, its field names keep
their case, as ApiDispatcher's unpackParams does. Anything else with a "[" in its name is
malformed (430), as there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import IntEnum
from typing import overload

# Consumed by the framework (signature, routing, output format); handlers never see them.
RESERVED_NAMES = frozenset(
    {"apikey", "signature", "signatureversion", "expires", "response", "command"})
_ARRAY_ITEM = re.compile(r"([^\[\]]+)\[(\d+)\]\.([^\[\]]+)")
_TRUE, _FALSE = "true", "false"


class ErrorCode(IntEnum):
    """CloudStack's ApiErrorCode: the HTTP status and the `errorcode` of an error answer."""

    UNAUTHORIZED = 401
    MALFORMED_PARAMETER_ERROR = 430
    PARAM_ERROR = 431
    UNSUPPORTED_ACTION_ERROR = 432
    INTERNAL_ERROR = 530
    ACCOUNT_ERROR = 531
    ACCOUNT_RESOURCE_LIMIT_ERROR = 532
    INSUFFICIENT_CAPACITY_ERROR = 533
    RESOURCE_UNAVAILABLE_ERROR = 534
    RESOURCE_ALLOCATION_ERROR = 535
    RESOURCE_IN_USE_ERROR = 536
    NETWORK_RULE_CONFLICT_ERROR = 537


# CSExceptionErrorCode's numbers for the exceptions behind most errors.
INVALID_PARAMETER_VALUE = 4350
CLOUD_RUNTIME = 4250
SERVER_API = 9999


class ApiError(Exception):
    """What a handler raises to answer with a CloudStack error: `code` is the HTTP status
    and the answer's errorcode (an ErrorCode or any int), `text` its errortext."""

    def __init__(self, code: int, text: str, *,
                 cs_error_code: int = INVALID_PARAMETER_VALUE) -> None:
        super().__init__(text)
        self.code = int(code)
        self.text = text
        self.cs_error_code = cs_error_code

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.text!r})"


def internal_error(exc: BaseException) -> ApiError:
    """The 530 for an unexpected exception: CloudStack's words, then the exception on the
    same line (the traceback belongs in the log, never in the answer)."""
    detail = (str(exc).strip().splitlines() or [""])[0]
    summary = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return ApiError(ErrorCode.INTERNAL_ERROR,
                    f"Internal error executing command, please contact your administrator "
                    f"({summary})", cs_error_code=CLOUD_RUNTIME)


class Params:
    """The parameters of one request of `command`, reserved names left out."""

    def __init__(self, command: str, pairs: Iterable[tuple[str, str]]) -> None:
        self.command = command
        self._plain: dict[str, str] = {}
        self._arrays: dict[str, dict[int, dict[str, str]]] = {}
        for name, value in pairs:
            if name.lower() not in RESERVED_NAMES:
                self._add(name, value)

    def _add(self, name: str, value: str) -> None:
        # A repeated name keeps its first value, as the servlet's getParameter does.
        if "[" not in name:
            self._plain.setdefault(name.lower(), value)
            return
        item = _ARRAY_ITEM.fullmatch(name)
        if item is None:
            raise ApiError(ErrorCode.MALFORMED_PARAMETER_ERROR,
                           f"Unable to decode parameter {name}; if specifying an object array, "
                           f"please use parameter[index].field=XXX, e.g. "
                           f"userGroupList[0].group=httpGroup")
        array, index, field = item.group(1).lower(), int(item.group(2)), item.group(3)
        self._arrays.setdefault(array, {}).setdefault(index, {}).setdefault(field, value)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._plain or name.lower() in self._arrays

    def __repr__(self) -> str:
        return f"Params({self.command!r}, {self._plain!r}, {self._arrays!r})"

    def as_dict(self) -> dict[str, str]:
        """The plain (non-array) parameters, lower-cased names."""
        return dict(self._plain)

    # --- scalars -----------------------------------------------------------------------

    @overload
    def text(self, name: str) -> str | None: ...
    @overload
    def text(self, name: str, default: str) -> str: ...

    def text(self, name: str, default: str | None = None) -> str | None:
        return self._plain.get(name.lower(), default)

    def required(self, name: str) -> str:
        """The value; missing or empty is CloudStack's 431."""
        value = self._plain.get(name.lower(), "")
        if not value:
            raise ApiError(ErrorCode.PARAM_ERROR,
                           f"Unable to execute API command {self.command.lower()} due to "
                           f"missing parameter {name}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        # Stricter than CloudStack (Boolean.valueOf reads any typo as false): a simulator
        # should make a client's typo visible.
        value = self.text(name)
        if value is None or value == "":
            return default
        if value.lower() not in (_TRUE, _FALSE):
            raise self.invalid(name, value, "incorrect boolean value format")
        return value.lower() == _TRUE

    @overload
    def integer(self, name: str) -> int | None: ...
    @overload
    def integer(self, name: str, default: int) -> int: ...

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.text(name)
        if value is None or value == "":
            return default
        try:
            return int(value, 10)
        except ValueError:
            raise self.invalid(name, value, "incorrect long value format") from None

    def csv(self, name: str) -> list[str]:
        """A list parameter (`supportedservices=Dhcp,Dns`); empty items are skipped, as
        CloudStack's StringTokenizer skips them."""
        return [item for item in self.text(name, "").split(",") if item]

    def invalid(self, name: str, value: str, why: str) -> ApiError:
        """The 431 for a value of the wrong form, in CloudStack's words."""
        return ApiError(ErrorCode.PARAM_ERROR,
                        f"Unable to execute API command {self.command.lower()} due to invalid "
                        f"value. Invalid parameter {name} value={value} due to {why}")

    # --- object arrays -----------------------------------------------------------------

    def indexed(self, name: str) -> list[dict[str, str]]:
        """`serviceproviderlist[0].service=..&serviceproviderlist[0].provider=..` as one
        dict per index, by index (numerically: [10] after [9])."""
        items = self._arrays.get(name.lower(), {})
        return [dict(items[index]) for index in sorted(items)]

    def map(self, name: str) -> dict[str, str]:
        """A map parameter in either form CloudStack reads: `details[0].key=k` with
        `details[0].value=v`, or `details[0].k=v` (what the cs client sends for a dict)."""
        result: dict[str, str] = {}
        for item in self.indexed(name):
            if item.keys() == {"key", "value"}:
                result[item["key"]] = item["value"]
            else:
                result.update(item)
        return result
