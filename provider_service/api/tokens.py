"""/v1/extension-tokens: the CloudStack entry-point's own tokens (admin only).

`vxgate cloudstack register` asks for one per extension and puts it into the
registration details instead of the admin token. POST is idempotent for a caller that
already holds the valid token: with {"keep": <token>} matching the stored digest the same
token comes back, so a re-run of the registration changes nothing in CloudStack.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.api.openapi import operation
from provider_service.app import db
from provider_service.errors import NotFound
from provider_service.models.tokens import ExtensionToken

blueprint = Blueprint("tokens", __name__, url_prefix="/v1")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@blueprint.post("/extension-tokens/<name>")
def issue_extension_token(name: str) -> ResponseReturnValue:
    """The token for extension `name`: `keep` if it is the valid one, else a new one
    (the old one stops working). Shown once: only its digest is stored."""
    name = v.parse_name(name, "name")
    keep = ""
    if request.get_data():
        keep = Body.from_request(("keep",)).get("keep", v.require_str, "")
    fresh = secrets.token_urlsafe(32)

    def work(session: Session) -> dict[str, Any]:
        row = session.get(ExtensionToken, name)
        if row is not None and keep and hmac.compare_digest(row.token_sha256, digest(keep)):
            return {"name": name, "token": keep, "issued": False}
        if row is None:
            session.add(ExtensionToken(name=name, token_sha256=digest(fresh)))
        else:
            row.token_sha256 = digest(fresh)
        return {"name": name, "token": fresh, "issued": True}

    return db().write(work, desired_state=False)


@blueprint.get("/extension-tokens")
def list_extension_tokens() -> ResponseReturnValue:
    with db().read() as session:
        rows = session.scalars(select(ExtensionToken).order_by(ExtensionToken.name))
        return [{"name": row.name, "issued_at": row.updated_at.isoformat()} for row in rows]


@blueprint.delete("/extension-tokens/<name>")
def revoke_extension_token(name: str) -> ResponseReturnValue:
    def work(session: Session) -> dict[str, Any]:
        row = session.get(ExtensionToken, name)
        if row is None:
            raise NotFound(f"no extension token {v.show(name)}")
        session.delete(row)
        return {"name": name, "revoked": True}

    return db().write(work, desired_state=False)


SCHEMAS: dict[str, Any] = {
    "ExtensionTokenRequest": {"type": "object", "properties": {
        "keep": {"type": "string", "description": "the token the caller holds: returned "
                                                  "unchanged if it is the valid one"}}},
    "ExtensionToken": {"type": "object", "properties": {
        "name": {"type": "string"}, "token": {"type": "string"},
        "issued": {"type": "boolean", "description": "false: `keep` was valid and kept"}}},
}
PATHS: dict[str, Any] = {
    "/v1/extension-tokens": {
        "get": operation("List extension tokens (names and dates, never tokens)",
                         response={"type": "array"}, errors=()),
    },
    "/v1/extension-tokens/{name}": {
        "post": operation("Issue the extension's token (admin token only); it reaches only "
                          "POST /v1/cloudstack/{command}", request="ExtensionTokenRequest",
                          response="ExtensionToken", errors=(400,)),
        "delete": operation("Revoke the extension's token", errors=(404,)),
    },
}
