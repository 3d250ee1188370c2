"""The OpenAPI document lists exactly the /v1 routes the app serves."""

from __future__ import annotations

import re

from provider_service.api.openapi import document
from provider_service.app import create_app
from provider_service.config import Settings


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = create_app(Settings(database_url="sqlite://", admin_token="x" * 16))
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method) for path, operations in document()["paths"].items() for method in operations
    }
    assert served == documented


def test_every_schema_reference_resolves() -> None:
    doc = document()
    names = set(doc["components"]["schemas"])
    refs = set(re.findall(r"#/components/schemas/(\w+)", str(doc)))
    assert refs <= names
