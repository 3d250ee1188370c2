"""The service's own exceptions. Each maps to one HTTP status and a one-line message."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: `status` is the HTTP status, str(self) the one-line message."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, always


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class PoolExhausted(Conflict):
    """No free number left in a VNI/VLAN/ASN pool."""


class Unavailable(ServiceError):
    """The database could not complete the request (locked, unreachable) after retries."""

    status = 503


class Forbidden(ServiceError):
    """A valid token whose role may not make this call."""

    status = 403
