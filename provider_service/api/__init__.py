"""The /v1 REST API: one blueprint per resource family, one OpenAPI document for all."""

from __future__ import annotations

from flask import Flask

from provider_service.api import inventory, networks, openapi

BLUEPRINTS = (inventory.blueprint, networks.blueprint, openapi.blueprint)


def register_blueprints(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
