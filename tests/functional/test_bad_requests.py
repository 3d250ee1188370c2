"""Input no client should send, and a database that is gone: always one line, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provider_service.app import create_app
from provider_service.config import Settings
from tests.conftest import ADMIN_TOKEN, PHYSNET, ZONE, Api

NETWORK = {"zone_id": ZONE, "cidr": "10.1.0.0/24", "gateway": "10.1.0.1"}


def _raw_put(api: Api, path: str, body: bytes) -> tuple[int, str]:
    response = api.client.put(path, data=body, headers={**api.headers,
                                                        "Content-Type": "application/json"})
    error = response.get_json()["error"]
    assert "\n" not in error and "Traceback" not in error
    return response.status_code, error


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"zone_id": "1", "cidr": "10.1.0.0/24", "gateway": "10.1.0.1", "state": "a\\u0000b"}',
         "NUL character"),
        (b'{"zone_id": "1", "cidr": "10.1.0.0/24", "gateway": "10.1.0.1", "state": "\\ud800"}',
         "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\xff\xfe{", "not valid JSON"),
        (b'{"zone_id": "1", "cidr": "10.1.0.0/24", "gateway": "10.1.0.1", "\\ud800": 1}',
         "not valid UTF-8"),
    ],
)
def test_bodies_no_database_could_store_are_refused(
    api: Api, zone: Any, body: bytes, message: str
) -> None:
    status, error = _raw_put(api, "/v1/networks/42", body)
    assert status == 400 and message in error
    assert api.ok("GET", "/v1/networks") == []


@pytest.mark.parametrize(
    "field",
    [
        {"ip6_cidr": "2001:db8::%x\nserver=evil:53\n/64", "ip6_gateway": "2001:db8::1"},
        {"ip6_cidr": "2001:db8::/64", "ip6_gateway": "2001:db8::1%x\ndhcp-option=6,6.6.6.6"},
        {"extension_ip": "10.1.0.9%eth0"},
    ],
)
def test_ipv6_scope_ids_cannot_smuggle_text(api: Api, zone: Any, field: dict[str, str]) -> None:
    error = api.fails("PUT", "/v1/networks/42", {**NETWORK, **field}, 400)
    assert ": not a" in error or ": not an" in error
    assert api.ok("GET", "/v1/networks") == []


def test_cloudstack_envelope_is_checked_the_same_way(api: Api, zone: Any) -> None:
    status, error = _raw_put(api, "/v1/zones/1", b'{"name": "\\u0000"}')
    assert status == 400 and "NUL" in error
    response = api.client.post("/v1/cloudstack/implement-network", headers=api.headers,
                               data=b'{"payload": {"network_id": "\\ud800"}}')
    assert response.status_code == 400
    assert "not valid UTF-8" in response.get_json()["error"]


def test_error_messages_stay_on_one_line(api: Api) -> None:
    response = api.client.get("/v1/nope%0Aline", headers=api.headers)
    assert response.status_code == 404
    assert "\n" not in response.get_json()["error"]


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://vxgate:vxgate@127.0.0.1:1/none?connect_timeout=2",
     "sqlite:////nonexistent-dir/vxgate.db"],
)
def test_database_gone_is_a_503_not_a_500(url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for method, path, body in (("PUT", "/v1/networks/42", NETWORK), ("GET", "/v1/zones", None),
                               ("PUT", "/v1/zones/1", {})):
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 503, (method, path, response.get_json())
        assert response.get_json()["error"].startswith("database error:")
    assert PHYSNET  # the zone fixture is not used: there is no database to seed
