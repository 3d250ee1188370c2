"""/v1/devices/<name>/config and /status: what a device should run, and how it went."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from provider_service import device_state as ops
from provider_service import metrics
from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.api.openapi import operation
from provider_service.app import db
from provider_service.errors import BadRequest, Conflict
from provider_service.frr_intent import compile_frr_intent
from provider_service.frr_render import ARTIFACT, render_frr
from provider_service.leaf_state import ARTIFACT as LEAF_ARTIFACT
from provider_service.leaf_state import render_leaf_state
from provider_service.models import DeviceConfig, ObjectStatus
from provider_service.models.device_state import OBJECT_STATES
from provider_service.softgate_state import compile_softgate_state, render_softgate_state
from provider_service.stopping import STOPPING

blueprint = Blueprint("device_state", __name__, url_prefix="/v1")

MAX_ARTIFACT_BYTES = 4 * 1024 * 1024
MAX_REASON_CHARS = 1000
_ARTIFACT_RE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_OBJECT_KIND_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SOFTGATE_ARTIFACT = "softgate.json"
RENDERED_ARTIFACTS = (ARTIFACT, SOFTGATE_ARTIFACT, LEAF_ARTIFACT)
# Long-poll: an agent waits at most this long for a change, and the wait reads the
# desired-state version this often (one integer; a render happens only when it moved).
MAX_WAIT_S = 60
WAIT_POLL_S = 0.1


def parse_artifact_name(value: object, field: str) -> str:
    text = v.require_str(value, field)
    if not _ARTIFACT_RE.fullmatch(text):
        raise BadRequest(f"{field}: use 1-32 lower-case letters, digits, '.', '_' or '-'")
    return text


def parse_content(value: object, field: str) -> str:
    text = v.require_str(value, field)
    if len(text.encode()) > MAX_ARTIFACT_BYTES:
        raise BadRequest(f"{field}: larger than {MAX_ARTIFACT_BYTES} bytes")
    return text


def parse_report(item: object, index: int) -> ops.ObjectReport:
    body = Body.nested(item, ("kind", "id", "state", "reason"), f"objects[{index}]")

    def kind(value: object, field: str) -> str:
        text = v.require_str(value, field)
        if not _OBJECT_KIND_RE.fullmatch(text):
            raise BadRequest(f"{field}: not an object kind: {text[:40]!r}")
        return text

    def object_id(value: object, field: str) -> str:
        text = v.require_str(value, field)
        if not 0 < len(text) <= 128 or not text.isprintable():
            raise BadRequest(f"{field}: 1-128 printable characters")
        return text

    def reason(value: object, field: str) -> str:
        # Agents quote error messages; keep them one line and bounded.
        return " ".join(v.require_str(value, field).split())[:MAX_REASON_CHARS]

    return ops.ObjectReport(
        kind=body.get("kind", kind),
        id=body.get("id", object_id),
        state=body.get("state", lambda x, f: v.parse_choice(x, f, OBJECT_STATES)),
        reason=body.get("reason", reason, ""),
    )


@blueprint.put("/devices/<name>/config/<artifact>")
def put_artifact(name: str, artifact: str) -> ResponseReturnValue:
    artifact = parse_artifact_name(artifact, "artifact")
    if artifact in RENDERED_ARTIFACTS:
        raise Conflict(f"artifact: {artifact} is rendered by the service from the desired "
                       "state; it cannot be stored")
    content = Body.from_request(("content",)).get("content", parse_content)

    def work(session: Any) -> dict[str, Any]:
        device = ops.get_device(session, name)
        generation = ops.store_artifact(session, device, artifact, content)
        return {"device": name, "artifact": artifact, "generation": generation}

    return db().write(work, desired_state=False)


@blueprint.get("/devices/<name>/config")
def get_config(name: str) -> ResponseReturnValue:
    """Renders the device's artifacts from the current desired state first: an artifact
    whose text changed gets a new generation, one that did not keeps its own.

    With `wait=S` this is a long-poll: when nothing changed after `since`, the answer
    waits until the desired state changes in a way that changes this device's artifacts,
    or S seconds pass (then it answers with no artifacts and the same generation)."""
    since = v.parse_int(request.args.get("since", "0"), "since", 0, 2**62)
    wait = v.parse_int(request.args.get("wait", "0"), "wait", 0, MAX_WAIT_S)
    deadline = time.monotonic() + wait
    while True:
        # Read before rendering: a change that commits during the render moves it.
        version = db().state_version()
        answer = db().write(lambda session: _render(session, name, since),
                            desired_state=False)
        if answer["artifacts"] or not _wait_for_change(version, deadline):
            return answer


def _render(session: Any, name: str, since: int) -> dict[str, Any]:
    device = ops.get_device(session, name, lock=True)
    intent = compile_frr_intent(session, device)
    ops.store_artifact(session, device, ARTIFACT, render_frr(intent))
    if device.role == "leaf" and device.vtep:
        ops.store_artifact(session, device, LEAF_ARTIFACT, render_leaf_state(device, intent))
    if device.role == "softgate":
        ops.store_artifact(session, device, SOFTGATE_ARTIFACT,
                           render_softgate_state(compile_softgate_state(session, device)))
    return {
        "device": name,
        "generation": device.config_generation,
        "artifacts": {a.artifact: artifact_json(a)
                      for a in ops.artifacts_since(session, device, since)},
    }


def _wait_for_change(version: int, deadline: float) -> bool:
    """Whether the desired-state version moved from `version` before the deadline (or
    the worker's stop)."""
    while time.monotonic() < deadline:
        if STOPPING.wait(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic()))):
            return False  # the worker is stopping: answer now (provider_service.stopping)
        if db().state_version() != version:
            return True
    return False


@blueprint.post("/devices/<name>/token")
def new_token(name: str) -> ResponseReturnValue:
    """A new agent token for the device (the old one stops working). It is shown once:
    the service keeps only its SHA-256 digest."""
    token = secrets.token_urlsafe(32)

    def work(session: Any) -> dict[str, Any]:
        device = ops.get_device(session, name)
        device.token_sha256 = hashlib.sha256(token.encode()).hexdigest()
        return {"device": name, "token": token}

    return db().write(work, desired_state=False)


@blueprint.put("/devices/<name>/status")
def put_status(name: str) -> ResponseReturnValue:
    body = Body.from_request(("generation", "objects"))
    generation = body.get("generation", lambda x, f: v.parse_int(x, f, 0, 2**62))
    reports = [parse_report(item, i) for i, item in enumerate(body.items("objects"))]

    latencies: list[tuple[str, float]] = []
    roles: list[str] = []

    def work(session: Any) -> dict[str, Any]:
        device = ops.get_device(session, name)
        # Assigned, not appended: a write retried after a race runs this again.
        latencies[:] = ops.apply_latencies(session, device, generation, reports)
        roles[:] = [device.role]
        ops.record_status(session, device, generation, reports)
        return {"device": name, "recorded": len(reports)}

    answer = db().write(work, desired_state=False)
    metrics.observe_apply_latencies(roles[0], latencies)  # committed: count it once
    return answer


@blueprint.get("/devices/<name>/status")
def get_status(name: str) -> ResponseReturnValue:
    state = request.args.get("state")
    if state is not None:
        state = v.parse_choice(state, "state", OBJECT_STATES)
    with db().read() as session:
        device = ops.get_device(session, name)
        return {"device": name, "generation": device.config_generation,
                "objects": [status_json(row) for row in ops.statuses(session, device, state)]}


def artifact_json(artifact: DeviceConfig) -> dict[str, Any]:
    return {"generation": artifact.generation, "sha256": artifact.sha256,
            "content": artifact.content}


def status_json(row: ObjectStatus) -> dict[str, Any]:
    return {"kind": row.object_kind, "id": row.object_id, "generation": row.generation,
            "state": row.state, "reason": row.reason, "updated_at": row.updated_at.isoformat()}


SCHEMAS: dict[str, Any] = {
    "DeviceConfig": {"type": "object", "properties": {
        "device": {"type": "string"}, "generation": {"type": "integer"},
        "artifacts": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "generation": {"type": "integer"}, "sha256": {"type": "string"},
            "content": {"type": "string"}}}}}},
    "StatusReport": {"type": "object", "additionalProperties": False,
                     "required": ["generation", "objects"], "properties": {
        "generation": {"type": "integer", "description": "the config generation applied"},
        "objects": {"type": "array", "items": {"type": "object", "required": ["kind", "id",
                                                                             "state"],
                                               "properties": {
            "kind": {"type": "string"}, "id": {"type": "string"},
            "state": {"enum": list(OBJECT_STATES)}, "reason": {"type": "string"}}}}}},
    "DeviceToken": {"type": "object", "properties": {
        "device": {"type": "string"}, "token": {"type": "string"}}},
    "DeviceStatus": {"type": "object", "properties": {
        "device": {"type": "string"}, "generation": {"type": "integer"},
        "objects": {"type": "array", "items": {"type": "object"}}}},
}
PATHS: dict[str, Any] = {
    "/v1/devices/{name}/config": {
        "get": operation("Render the device's configs (frr.conf; softgate.json on a "
                         "SoftGate; leaf.json on a VTEP leaf), then return the artifacts "
                         "changed after generation `since` (default 0: all); with `wait` "
                         f"(seconds, at most {MAX_WAIT_S}) wait for a change first "
                         "(long-poll). The device's own token may call this.",
                         response="DeviceConfig", errors=(400, 404)),
    },
    "/v1/devices/{name}/token": {
        "post": operation("Issue a new agent token for the device (shown once; the old one "
                          "stops working)", request=None, response="DeviceToken",
                          errors=(404,)),
    },
    "/v1/devices/{name}/config/{artifact}": {
        "put": operation("Store a rendered artifact; bumps the generation if it changed",
                         request=None, response={"type": "object"}, errors=(400, 404, 409)),
    },
    "/v1/devices/{name}/status": {
        "put": operation("Report per-object apply status (the device's own token may call "
                         "this)", request="StatusReport",
                         response={"type": "object"}, errors=(400, 404)),
        "get": operation("Per-object apply status (filter: state)", response="DeviceStatus",
                         errors=(400, 404)),
    },
}
