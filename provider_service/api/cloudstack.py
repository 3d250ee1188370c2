"""/v1/cloudstack/<command>: CloudStack's events as the extension entry-point forwards them."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

import vxgate_log as log_context
from provider_service import metrics
from provider_service.api.body import request_json
from provider_service.api.openapi import operation
from provider_service.app import db
from provider_service.cloudstack import dispatch
from provider_service.errors import BadRequest, ServiceError

blueprint = Blueprint("cloudstack", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)


@blueprint.post("/cloudstack/<command>")
def post_event(command: str) -> ResponseReturnValue:
    """Handles the event, counts it (metrics) and logs one line of its outcome; every
    line logged meanwhile carries its command, network id and VPC id."""
    known = command in dispatch.COMMANDS or command == "custom-action"
    log_context.bind(command=command)  # one line, cut short: log_context.clean
    started = time.perf_counter()
    status = 500
    try:
        envelope = request_json()
        if not isinstance(envelope, dict):
            raise BadRequest("the request body must be CloudStack's event envelope "
                             "(a JSON object)")
        log_context.bind(**event_ids(envelope))
        output = db().write(lambda s: dispatch.handle(s, command, envelope))
        status = 200
        return {"output": output}
    except (ServiceError, HTTPException) as exc:
        status = exc.status if isinstance(exc, ServiceError) else exc.code or 500
        raise
    finally:
        seconds = time.perf_counter() - started
        metrics.observe_event(command, known, status, seconds)
        outcome = metrics.outcome_of(status)
        level = logging.INFO if outcome == "ok" else logging.WARNING
        # The error itself is logged by the app's handlers (a 5xx with its traceback).
        log_context.bind(outcome=outcome)
        log.log(level, "event %s in %.3f s", outcome, seconds)


def event_ids(envelope: dict[str, Any]) -> dict[str, object]:
    """The ids that say what an event is about: its payload's network and VPC (the flat
    custom-action has them at the top level). Never more: the envelope's details may hold
    what must not be logged."""
    payload = envelope.get("payload", envelope)
    if not isinstance(payload, dict):
        return {}
    return {key: payload[key] for key in ("network_id", "vpc_id", "zone_id")
            if isinstance(payload.get(key), str | int) and payload[key] != ""}


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
