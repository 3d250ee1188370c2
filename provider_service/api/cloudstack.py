"""/v1/cloudstack/<command>: CloudStack's events as the extension entry-point forwards them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

from provider_service.api.body import request_json
from provider_service.api.openapi import operation
from provider_service.app import db
from provider_service.cloudstack import dispatch
from provider_service.errors import BadRequest

blueprint = Blueprint("cloudstack", __name__, url_prefix="/v1")


@blueprint.post("/cloudstack/<command>")
def post_event(command: str) -> ResponseReturnValue:
    envelope = request_json()
    if not isinstance(envelope, dict):
        raise BadRequest("the request body must be CloudStack's event envelope (a JSON object)")
    output = db().write(lambda s: dispatch.handle(s, command, envelope))
    return {"output": output}


SCHEMAS: dict[str, Any] = {
    "CloudStackEvent": {
        "type": "object",
        "description": "protocol.md §2: physical-network-extension-details (secrets "
                       "removed), network-extension-details, payload; custom-action is flat",
    },
    "CloudStackAnswer": {
        "type": "object",
        "properties": {"output": {"description": "what the entry-point prints; null: nothing"}},
    },
}
PATHS: dict[str, Any] = {
    "/v1/cloudstack/{command}": {
        "post": operation("Record one CloudStack extension command (idempotent)",
                          request="CloudStackEvent", response="CloudStackAnswer"),
    },
}
