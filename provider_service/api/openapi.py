"""The OpenAPI 3.1 document, assembled from what each API module declares.

Each API module exports PATHS (path → operations) and SCHEMAS; a unit test checks that
every /v1 route Flask knows is documented here and every documented one exists.
"""

from __future__ import annotations

import importlib
from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

blueprint = Blueprint("openapi", __name__)

API_MODULES: list[str] = [
    "provider_service.api.inventory",
    "provider_service.api.networks",
    "provider_service.api.rules",
    "provider_service.api.vms",
    "provider_service.api.device_state",
    "provider_service.api.direct_connect",
    "provider_service.api.placement",
    "provider_service.api.cloudstack",
    "provider_service.api.tokens",
]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line, names the field"}},
}


def ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def operation(
    summary: str,
    *,
    request: str | None = None,
    response: str | dict[str, Any] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (400, 404, 409),
) -> dict[str, Any]:
    """One operation with the error responses every /v1 call can give."""
    body: dict[str, Any] = {"description": "OK"}
    if response is not None:
        schema = ref(response) if isinstance(response, str) else response
        body["content"] = {"application/json": {"schema": schema}}
    responses: dict[str, Any] = {str(status): body}
    for code in (*errors, 401, 403):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    spec: dict[str, Any] = {"summary": summary, "responses": responses}
    if request is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(request)}},
        }
    return spec


def list_of(schema: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(schema)}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for name in API_MODULES:
        module = importlib.import_module(name)
        paths.update(module.PATHS)
        schemas.update(module.SCHEMAS)
    error_responses = {
        f"E{code}": {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
        for code, text in {
            400: "invalid input; nothing was written",
            401: "missing or wrong token",
            403: "a valid token whose role may not make this call",
            404: "unknown object or reference",
            409: "conflicts with existing state, or a pool is exhausted",
        }.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "vxgate provider service", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": error_responses,
        },
    }


@blueprint.get("/v1/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return document()


PATHS = {"/v1/openapi.json": {"get": operation("This document", response={"type": "object"})}}
SCHEMAS: dict[str, Any] = {}
API_MODULES.append(__name__)
