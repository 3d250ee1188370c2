"""The agent's side of the API: per-device tokens, the long-poll, status reports."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.conftest import Api
from tests.golden.frr_cases import CASES, ZONE


def hypervisor(api: Api) -> str:
    return CASES["hypervisor"](lambda method, path, body: api.ok(method, path, body))


def as_agent(api: Api, token: str) -> Api:
    agent = Api(api.client)
    agent.headers = {"Authorization": f"Bearer {token}"}
    return agent


def test_device_token_opens_only_its_own_config_and_status(api: Api) -> None:
    device = hypervisor(api)
    api.ok("PUT", "/v1/devices/other", {"zone_id": ZONE, "role": "spine",
                                        "loopback": "10.255.0.9"})
    token = api.ok("POST", f"/v1/devices/{device}/token")["token"]
    agent = as_agent(api, token)
    assert agent.ok("GET", f"/v1/devices/{device}/config")["artifacts"]
    agent.ok("PUT", f"/v1/devices/{device}/status", {"generation": 1, "objects": [
        {"kind": "frr", "id": "frr.conf", "state": "ok"}]})
    for method, path in (("GET", "/v1/devices/other/config"), ("PUT", "/v1/devices/other/status"),
                         ("GET", "/v1/zones"), ("GET", f"/v1/devices/{device}"),
                         ("POST", f"/v1/devices/{device}/token"),
                         ("GET", f"/v1/devices/{device}/status")):
        body = {"generation": 1, "objects": []} if method == "PUT" else None
        assert agent.fails(method, path, body, 401) == "invalid token"
    # A new token replaces the old one.
    api.ok("POST", f"/v1/devices/{device}/token")
    assert agent.fails("GET", f"/v1/devices/{device}/config", None, 401) == "invalid token"
    assert api.fails("POST", "/v1/devices/nosuch/token", None, 404)


def test_long_poll_answers_at_once_when_something_is_new(api: Api) -> None:
    device = hypervisor(api)
    started = time.monotonic()
    answer = api.ok("GET", f"/v1/devices/{device}/config?since=0&wait=30")
    assert answer["artifacts"] and time.monotonic() - started < 5


def test_long_poll_times_out_with_nothing(api: Api) -> None:
    device = hypervisor(api)
    generation = api.ok("GET", f"/v1/devices/{device}/config")["generation"]
    started = time.monotonic()
    answer = api.ok("GET", f"/v1/devices/{device}/config?since={generation}&wait=1")
    assert answer == {"device": device, "generation": generation, "artifacts": {}}
    assert time.monotonic() - started >= 1


def test_long_poll_wakes_on_a_change_and_ignores_unrelated_writes(api: Api) -> None:
    device = hypervisor(api)
    generation = api.ok("GET", f"/v1/devices/{device}/config")["generation"]
    answers: list[Any] = []
    waiter = threading.Thread(target=lambda: answers.append(
        api.ok("GET", f"/v1/devices/{device}/config?since={generation}&wait=30")))
    started = time.monotonic()
    waiter.start()
    # A write that does not change this device's config: the poll keeps waiting.
    api.ok("PUT", f"/v1/devices/{device}/status", {"generation": generation, "objects": []})
    api.ok("PUT", "/v1/devices/other", {"zone_id": ZONE, "role": "spine",
                                        "loopback": "10.255.0.9"})
    time.sleep(0.3)  # the waiter must be parked in its wait for this test to mean anything
    assert waiter.is_alive()
    api.ok("PUT", "/v1/networks/net9", {"zone_id": ZONE, "physical_network_id": "200",
                                        "cidr": "10.100.9.0/24", "gateway": "10.100.9.1"})
    waiter.join(timeout=10)
    assert not waiter.is_alive() and time.monotonic() - started < 10
    (answer,) = answers
    assert answer["generation"] == generation + 1
    assert "10.100.9" not in answer["artifacts"]["frr.conf"]["content"]  # L2 only
    assert answer["artifacts"]["frr.conf"]["generation"] == generation + 1


def test_wait_is_bounded(api: Api) -> None:
    device = hypervisor(api)
    assert "wait" in api.fails("GET", f"/v1/devices/{device}/config?wait=600", None, 400)
