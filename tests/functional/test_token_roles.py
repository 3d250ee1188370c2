"""The three token roles: admin (everything), extension (only POST /v1/cloudstack/<command>),
agent (its own device's config and status); and every /v1 route refuses a missing token."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api
from tests.functional.test_agent_api import as_agent, hypervisor

# No tenant data behind them; /metrics has a token of its own (VXGATE_METRICS_TOKEN,
# tests/functional/test_observability.py) because scrapers carry none of ours.
PUBLIC_PATHS = {"/healthz", "/static/<path:filename>", "/metrics"}
EXTENSION_CALL = ("POST", "/v1/cloudstack/<command>")


def every_route(app: Flask) -> list[tuple[str, str, str]]:
    """(method, rule, a concrete path) of every route but the public ones."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC_PATHS:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: f"x-{m[1]}", rule.rule)
        routes += [(method, rule.rule, path)
                   for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def test_every_route_refuses_a_missing_or_wrong_token(app: Flask, api: Api) -> None:
    routes = every_route(app)
    assert len(routes) > 40 and all(rule.startswith("/v1/") for _, rule, _ in routes)
    anonymous = as_agent(api, "")
    anonymous.headers = {}
    wrong = as_agent(api, "not-a-token-0123456789")
    for method, _rule, path in routes:
        body = {} if method in ("POST", "PUT") else None
        assert anonymous.fails(method, path, body, 401).startswith("missing token")
        assert wrong.fails(method, path, body, 401) == "invalid token"


def test_extension_token_reaches_only_the_cloudstack_calls(app: Flask, api: Api,
                                                            zone: dict[str, Any]) -> None:
    issued = api.ok("POST", "/v1/extension-tokens/vxgate")
    assert issued["issued"] and len(issued["token"]) >= 32
    extension = as_agent(api, issued["token"])
    # It gets through authentication to the command (an unknown one: 404 from dispatch).
    assert "unknown command" in extension.fails(
        "POST", "/v1/cloudstack/frobnicate-network", {"payload": {}}, 404)
    for method, rule, path in every_route(app):
        if (method, rule) == EXTENSION_CALL:
            continue
        body = {} if method in ("POST", "PUT") else None
        error = extension.fails(method, path, body, 403)
        assert error == f"this token may not call {method} {path}"
    assert extension.fails("GET", "/v1/cloudstack/implement-network", None, 403)
    # The admin token still reaches everything, an agent token only its own device.
    api.ok("GET", "/v1/zones")
    device = hypervisor(api)
    agent = as_agent(api, api.ok("POST", f"/v1/devices/{device}/token")["token"])
    agent.ok("GET", f"/v1/devices/{device}/config")
    assert agent.fails("POST", "/v1/cloudstack/frobnicate-network", {}, 401) == "invalid token"
    assert agent.fails("GET", "/v1/zones", None, 401) == "invalid token"


def test_extension_tokens_are_kept_rotated_and_revoked(api: Api) -> None:
    first = api.ok("POST", "/v1/extension-tokens/vxgate")["token"]
    assert api.ok("POST", "/v1/extension-tokens/vxgate", {"keep": first}) == {
        "name": "vxgate", "token": first, "issued": False}
    routed = api.ok("POST", "/v1/extension-tokens/vxgate-routed", {"keep": first})
    assert routed["issued"] and routed["token"] != first  # kept only for its own name
    second = api.ok("POST", "/v1/extension-tokens/vxgate", {"keep": "stale-0123456789"})["token"]
    assert second != first
    old, new = as_agent(api, first), as_agent(api, second)
    assert old.fails("POST", "/v1/cloudstack/x-y", {}, 401) == "invalid token"
    assert new.fails("POST", "/v1/cloudstack/x-y", {}, 404)
    names = [row["name"] for row in api.ok("GET", "/v1/extension-tokens")]
    assert names == ["vxgate", "vxgate-routed"]
    assert all(first not in str(row) and second not in str(row)
               for row in api.ok("GET", "/v1/extension-tokens"))
    api.ok("DELETE", "/v1/extension-tokens/vxgate")
    assert new.fails("POST", "/v1/cloudstack/x-y", {}, 401) == "invalid token"
    api.fails("DELETE", "/v1/extension-tokens/vxgate", None, 404)
    assert "name" in api.fails("POST", "/v1/extension-tokens/bad%20name", None, 400)
    assert "keep" in api.fails("POST", "/v1/extension-tokens/vxgate", {"keep": 5}, 400)


@pytest.mark.parametrize("method", ["POST", "DELETE", "GET"])
def test_only_the_admin_token_manages_extension_tokens(api: Api, method: str) -> None:
    token = api.ok("POST", "/v1/extension-tokens/vxgate")["token"]
    path = "/v1/extension-tokens" + ("" if method == "GET" else "/vxgate")
    as_agent(api, token).fails(method, path, None, 403)
