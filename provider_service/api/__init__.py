"""The /v1 REST API: one blueprint per resource family, one OpenAPI document for all."""

from __future__ import annotations

from flask import Flask

from provider_service.api import (
    cloudstack,
    device_state,
    direct_connect,
    inventory,
    metrics,
    networks,
    openapi,
    placement,
    rules,
    tokens,
    vms,
)

BLUEPRINTS = (
    inventory.blueprint,
    networks.blueprint,
    rules.blueprint,
    vms.blueprint,
    device_state.blueprint,
    direct_connect.blueprint,
    placement.blueprint,
    cloudstack.blueprint,
    tokens.blueprint,
    openapi.blueprint,
    metrics.blueprint,
)


def register_blueprints(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
