"""The stand-in's command table: handlers register here by kind, and are bound to the
API server in one place (server.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from simulator.cloudstack.api import ApiError, ErrorCode, Kind, Params
from simulator.cloudstack.cloud import CloudStackSim
from simulator.cloudstack.element import ElementError
from simulator.cloudstack.model import Record, Table

Handler = Callable[[CloudStackSim, Params], Any]
H = TypeVar("H", bound=Handler)
R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Command:
    name: str
    kind: Kind
    object_name: str | None  # None: the answer is {"success": true}
    handler: Handler


@dataclass
class Commands:
    table: list[Command] = field(default_factory=list)

    def _add(self, name: str, kind: Kind, object_name: str | None) -> Callable[[H], H]:
        def register(handler: H) -> H:
            self.table.append(Command(name, kind, object_name, _provider_errors(handler)))
            return handler
        return register

    def sync(self, name: str, object_name: str | None) -> Callable[[H], H]:
        return self._add(name, "sync", object_name)

    def asynchronous(self, name: str, object_name: str | None) -> Callable[[H], H]:
        return self._add(name, "async", object_name)

    def list(self, name: str, object_name: str) -> Callable[[H], H]:
        return self._add(name, "list", object_name)


def _provider_errors(handler: Handler) -> Handler:
    """What NEE throws (a failed command, a bad stored detail) fails the API call with
    its one line, as CloudStack's ResourceUnavailableException does."""
    @wraps(handler)
    def call(sim: CloudStackSim, params: Params) -> Any:
        try:
            return handler(sim, params)
        except ElementError as error:
            raise ApiError(ErrorCode.INTERNAL_ERROR, str(error)) from None
    return call


def find(table: Table[R], uuid: str, what: str) -> R:
    """The record the API names by UUID, or CloudStack's one-line refusal."""
    found = table.by_uuid(uuid)
    if found is None:
        raise ApiError(ErrorCode.PARAM_ERROR, f"Unable to find {what} with specified id {uuid}")
    return found
