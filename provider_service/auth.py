"""Who may call what. Three roles, one token each:

- the admin token: every call;
- an extension token (POST /v1/extension-tokens/{name} issues one): only
  POST /v1/cloudstack/<command>, the one call the CloudStack entry-point makes. It sits in
  CloudStack's registration details and payload files, so it opens nothing else;
- a device's agent token (POST /v1/devices/{name}/token): only GET config and PUT status
  of its own device. An agent runs on a SoftGate or hypervisor, a machine a tenant's
  traffic passes through.

The service keeps only the SHA-256 digest of extension and agent tokens. The extension
token on any other call is refused with 403; a wrong token, or an agent token off its two
calls, with 401 "invalid token" (as before the extension role existed). No message names
a token or its holder.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from flask import current_app, request
from sqlalchemy import select

from provider_service.config import Settings
from provider_service.errors import Forbidden, Unauthorized
from provider_service.models import Device
from provider_service.models.tokens import ExtensionToken

API_PREFIX = "/v1"
# The calls of an agent: fetch (long-poll) its configs, report how applying them went.
_AGENT_CALLS = {("GET", "config"), ("PUT", "status")}
_DEVICE_PATH = re.compile(r"/v1/devices/([^/]{1,63})/(config|status)")
# The call of the extension entry-point (plugin/vxgate_extension.py: send()).
_EXTENSION_PATH = re.compile(r"/v1/cloudstack/[^/]{1,63}")
# What a digest is compared with when there is none: no token has it.
_NO_DIGEST = "-" * 64


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
    digest = hashlib.sha256(token.encode()).hexdigest()
    if request.method == "POST" and _EXTENSION_PATH.fullmatch(request.path):
        if _extension_holds(digest):
            return
    elif _agent_may(request.method, request.path, digest):
        return
    if _extension_holds(digest):  # asked only on the way to a refusal: 403 or 401
        raise Forbidden(f"this token may not call {request.method} "
                        f"{_shown_path(request.path)}")
    raise Unauthorized("invalid token")


def _agent_may(method: str, path: str, digest: str) -> bool:
    match = _DEVICE_PATH.fullmatch(path)
    if match is None or (method, match[2]) not in _AGENT_CALLS:
        return False
    from provider_service.app import db  # the app module imports this one

    with db().read() as session:
        device = session.get(Device, match[1])
        stored = device.token_sha256 if device is not None else ""
    # An unknown device and a device without a token compare against a digest that no
    # token has, so the answer takes as long as for a wrong token.
    return hmac.compare_digest(stored or _NO_DIGEST, digest)


def _extension_holds(digest: str) -> bool:
    from provider_service.app import db

    with db().read() as session:
        found = session.scalar(select(ExtensionToken.name)
                               .where(ExtensionToken.token_sha256 == digest))
    return found is not None


def _shown_path(path: str) -> str:
    # The path is the caller's text: keep it to one short printable line.
    shown = "".join(c if c.isprintable() else "?" for c in path[:120])
    return shown + ("..." if len(path) > 120 else "")
