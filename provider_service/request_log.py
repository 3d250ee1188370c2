"""Per-request log context: every line logged while a request is handled carries its
request id and, from the URL, the device, network, VPC or zone it is about.

The request id is the caller's X-Request-Id when it is a plain token (so a line of the
caller's log and one of ours can be matched), else a new one; the answer carries it back.
"""

from __future__ import annotations

import re
import uuid

from flask import Response, request

import vxgate_log as log_context

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# URL variables worth a field, and the field; <name> only names a device under /v1/devices.
_URL_FIELDS = {"network_id": "network_id", "vpc_id": "vpc_id", "zone_id": "zone_id"}


def bind_request() -> None:
    """Flask before_request (registered first: lines of a refused call carry it too).
    A gthread worker's thread serves request after request: start from nothing."""
    log_context.clear()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    fields: dict[str, object] = {"request_id": request_id}
    arguments = request.view_args or {}
    fields.update({field: arguments[name] for name, field in _URL_FIELDS.items()
                   if name in arguments})
    if request.path.startswith("/v1/devices/") and "name" in arguments:
        fields["device"] = arguments["name"]
    log_context.bind(**fields)


def add_request_id(response: Response) -> Response:
    """Flask after_request: the answer names the request id its log lines carry."""
    request_id = log_context.context().get("request_id")
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = str(request_id)
    return response


def unbind_request(_error: BaseException | None = None) -> None:
    """Flask teardown_request: nothing of this request follows the thread to the next."""
    log_context.clear()
