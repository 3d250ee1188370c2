"""Who may call what: the admin token everything, a device's agent token only its own
config and status.

An agent runs on a SoftGate or hypervisor, a machine a tenant's traffic passes through;
its token must not open the rest of the API. The service keeps only the SHA-256 digest of
agent tokens (POST /v1/devices/{name}/token issues one).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from flask import current_app, request

from provider_service.config import Settings
from provider_service.errors import Unauthorized
from provider_service.models import Device

API_PREFIX = "/v1"
# The calls of an agent: fetch (long-poll) its configs, report how applying them went.
_AGENT_CALLS = {("GET", "config"), ("PUT", "status")}
_DEVICE_PATH = re.compile(r"/v1/devices/([^/]{1,63})/(config|status)")


def authenticate() -> None:
    """Flask before_request: refuse /v1 calls without a token that may make them."""
    if not request.path.startswith(API_PREFIX + "/"):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
    settings: Settings = current_app.config["VXGATE_SETTINGS"]
    if hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return
    if not _agent_may(request.method, request.path, token):
        raise Unauthorized("invalid token")


def _agent_may(method: str, path: str, token: str) -> bool:
    match = _DEVICE_PATH.fullmatch(path)
    if match is None or (method, match[2]) not in _AGENT_CALLS:
        return False
    from provider_service.app import db  # the app module imports this one

    with db().read() as session:
        device = session.get(Device, match[1])
        stored = device.token_sha256 if device is not None else ""
    digest = hashlib.sha256(token.encode()).hexdigest()
    # An unknown device and a device without a token compare against a digest that no
    # token has, so the answer takes as long as for a wrong token.
    return hmac.compare_digest(stored or "-" * 64, digest)
