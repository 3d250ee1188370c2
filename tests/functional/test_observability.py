"""/metrics and the JSON log lines of the real service (gunicorn, two workers) and agent.

Counters are compared as differences between two scrapes: the module's service is
shared by its tests.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import vxgate_log
from bench.service import Service, with_this_checkout
from provider_service.app import create_app
from provider_service.cloudstack import dispatch
from provider_service.config import Settings
from simulator.fabric import wait_until
from tests import cloudstack_payloads as cp
from tests import fuzzing
from tests.cloudstack_payloads import Net, Registration, Vpc
from tests.conftest import ADMIN_TOKEN

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEVICE = "hv-observe"
DEVICE_BODY = {"zone_id": cp.ZONE, "role": "hypervisor", "loopback": "10.255.1.77",
               "uplinks": [{"interface": "uplink"}]}


def scrape(service: Service, headers: dict[str, str] | None = None
           ) -> tuple[int, str, str]:
    """(status, content type, body) of GET /metrics, without the API's token."""
    connection = http.client.HTTPConnection(service.host, service.port, timeout=60)
    try:
        connection.request("GET", "/metrics", headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), \
            response.read().decode()
    finally:
        connection.close()


def samples(service: Service) -> Samples:
    status, content_type, text = scrape(service)
    assert status == 200, text
    assert content_type.startswith("text/plain; version=0.0.4")
    return parse_samples(text)


def parse_samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):  # raises on a malformed text
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate sample {key}"
            found[key] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def post_event(service: Service, command: str, payload: dict[str, Any]) -> int:
    envelope = cp.envelope(Registration.of(service), {}, payload)
    status, _ = service.call("POST", f"/v1/cloudstack/{command}", envelope)
    return status


def log_lines(path: Path, offset: int) -> list[dict[str, Any]]:
    """The lines written after `offset`; every one must be a JSON object."""
    lines = path.read_bytes()[offset:].decode().splitlines()
    parsed = [json.loads(line) for line in lines if line.strip()]
    for line in parsed:
        assert isinstance(line, dict) and {"time", "level", "logger", "message"} <= set(line)
    return parsed


def test_events_are_counted_by_command_and_outcome_across_workers(service: Service) -> None:
    before = samples(service)
    net = Net("611", "10.61.0.0/24", "10.61.0.1")
    assert cp.run_entry_point("implement-network", cp.envelope(
        Registration.of(service), {}, cp.implement_network(net)))[0] == 0
    replays = 5  # fresh connections: gunicorn's two workers share them
    assert [post_event(service, "implement-network", cp.implement_network(net))
            for _ in range(replays)] == [200] * replays
    assert post_event(service, "shutdown-network", {}) == 400  # no network_id
    assert post_event(service, "frobnicate-network", cp.N(net)) == 404

    # Every scrape, whichever worker serves it, sums all workers' counts.
    for _ in range(4):
        after = samples(service)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)  # noqa: B023

        assert delta("vxgate_events_total", command="implement-network",
                     outcome="ok") == 1 + replays
        assert delta("vxgate_events_total", command="shutdown-network",
                     outcome="rejected") == 1
        assert delta("vxgate_events_total", command="unknown", outcome="rejected") == 1
        assert delta("vxgate_event_duration_seconds_count",
                     command="implement-network") == 1 + replays
        assert delta("vxgate_event_duration_seconds_bucket", command="implement-network",
                     le="+Inf") == 1 + replays
        assert delta("vxgate_event_duration_seconds_sum", command="implement-network") > 0
    assert list((service.state_dir / "metrics").glob("*.db")), "no multiprocess files"

    # Pools: read from the database at scrape time.
    assert value(after, "vxgate_pool_size", zone=cp.ZONE, scope=cp.PHYSNET,
                 purpose="l2vni") == 1000
    assert value(after, "vxgate_pool_used", zone=cp.ZONE, scope=cp.PHYSNET,
                 purpose="l2vni") >= 1


def test_device_generation_apply_status_and_latency(service: Service) -> None:
    service.ok("PUT", f"/v1/devices/{DEVICE}", DEVICE_BODY)
    generation = service.ok("GET", f"/v1/devices/{DEVICE}/config?since=0")["generation"]
    before = samples(service)
    report = {"generation": generation, "objects": [
        {"kind": "artifact", "id": "frr.conf", "state": "ok"},
        {"kind": "segment", "id": "vx-42", "state": "error", "reason": "no such device"}]}
    service.ok("PUT", f"/v1/devices/{DEVICE}/status", report)
    service.ok("PUT", f"/v1/devices/{DEVICE}/status", report)  # a resync: no new apply
    after = samples(service)
    labels = {"device": DEVICE, "role": "hypervisor"}
    assert value(after, "vxgate_device_config_generation", **labels) == generation
    assert value(after, "vxgate_device_applied_generation", **labels) == generation
    assert value(after, "vxgate_device_objects_in_error", **labels) == 1
    assert value(after, "vxgate_device_last_report_timestamp_seconds", **labels) > 0
    latency = {"role": "hypervisor", "artifact": "frr.conf"}
    assert value(after, "vxgate_apply_latency_seconds_count", **latency) - value(
        before, "vxgate_apply_latency_seconds_count", **latency) == 1


def test_metrics_need_no_api_token_and_show_no_secret(service: Service) -> None:
    status, _, text = scrape(service)
    assert status == 200
    assert service.token not in text
    assert Registration.of(service).password not in text


def test_an_events_log_lines_carry_its_ids(service: Service) -> None:
    offset = service.log_path.stat().st_size
    net = Net("612", "10.62.0.0/24", "10.62.0.1")
    assert post_event(service, "implement-network", cp.implement_network(net)) == 200
    assert post_event(service, "shutdown-network", {"zone_id": cp.ZONE}) == 400
    wait_until("the event's log lines", lambda: len(
        [line for line in log_lines(service.log_path, offset)
         if line["logger"] == "provider_service.api.cloudstack"]) >= 2, timeout=30)
    events = [line for line in log_lines(service.log_path, offset)
              if line["logger"] == "provider_service.api.cloudstack"]
    ok, refused = events[0], events[1]
    assert ok["command"] == "implement-network" and ok["network_id"] == net.id
    assert ok["outcome"] == "ok" and ok["level"] == "info" and ok["request_id"]
    assert refused["command"] == "shutdown-network" and refused["outcome"] == "rejected"
    assert refused["level"] == "warning" and "network_id" not in refused
    assert ok["request_id"] != refused["request_id"]


def test_a_vpc_events_log_lines_carry_its_vpc_id(service: Service) -> None:
    """VPC-level events (the VPC's own and its tier's): every line logged while one is
    handled names the VPC, and the request it belongs to."""
    offset = service.log_path.stat().st_size
    vpc = Vpc("620", "10.120.0.0/16")
    tier = Net("621", "10.120.1.0/24", "10.120.1.1", vpc=vpc)
    sent = [("ensure-network-device", cp.ensure_vpc(vpc)), ("implement-vpc", cp.V(vpc)),
            ("implement-network", cp.implement_network(tier))]
    assert [post_event(service, command, payload) for command, payload in sent] == [200] * 3

    def event_lines() -> list[dict[str, Any]]:
        # Only lines logged while an event is handled carry its command.
        return [line for line in log_lines(service.log_path, offset) if "command" in line]

    wait_until("the events' log lines", lambda: len(event_lines()) >= len(sent), timeout=30)
    lines = event_lines()
    assert all(line["vpc_id"] == vpc.id and line["request_id"] for line in lines), lines
    outcomes = [line for line in lines if line["logger"] == "provider_service.api.cloudstack"]
    assert [(line["command"], line["outcome"]) for line in outcomes] == [
        (command, "ok") for command, _ in sent]
    assert outcomes[2]["network_id"] == tier.id and "network_id" not in outcomes[1]
    assert len({line["request_id"] for line in outcomes}) == len(sent)


@pytest.fixture
def agent(service: Service, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The real agent of DEVICE, with an FRR socket directory where no FRR runs: its
    frr.conf apply fails (and logs), nothing on this machine changes."""
    service.ok("PUT", f"/v1/devices/{DEVICE}", DEVICE_BODY)
    token_file = tmp_path / "token"
    token_file.write_text(service.ok("POST", f"/v1/devices/{DEVICE}/token")["token"])
    vty = tmp_path / "no-frr"
    vty.mkdir()
    log_path = tmp_path / "agent.log"
    argv = [sys.executable, "-m", "agent.main", "--service",
            f"http://{service.host}:{service.port}", "--device", DEVICE, "--token-file",
            str(token_file), "--state-dir", str(tmp_path / "state"), "--frr-vty-dir",
            str(vty), "--long-poll", "1"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=with_this_checkout({"PATH": "/usr/bin:/bin"}))
    try:
        yield process, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_agents_log_lines_carry_its_device(
        agent: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, log_path = agent

    def applied() -> bool:
        assert process.poll() is None, log_path.read_text()
        return any(line["message"].startswith("applied frr.conf")
                   for line in log_lines(log_path, 0))

    wait_until("the agent to apply frr.conf", applied, timeout=120)
    lines = log_lines(log_path, 0)
    assert lines and all(line["device"] == DEVICE for line in lines)
    apply_line = next(line for line in lines if line["message"].startswith("applied"))
    assert apply_line["artifact"] == "frr.conf" and apply_line["logger"] == "agent.daemon"
    assert isinstance(apply_line["generation"], int)


def test_a_metrics_token_when_set_is_required(database_url: str) -> None:
    settings = Settings(database_url=database_url, admin_token=ADMIN_TOKEN,
                        metrics_token="scrape-token-0123456789")
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.get("/metrics", headers=admin).status_code == 401
        answer = client.get("/metrics", headers={
            "Authorization": "Bearer scrape-token-0123456789"})
        assert answer.status_code == 200
        text = answer.get_data(as_text=True)
        assert "# TYPE vxgate_events_total counter" in text
        assert "# TYPE vxgate_pool_size gauge" in text
    finally:
        app.extensions["vxgate.db"].dispose()


def test_the_answer_names_the_request_id_of_its_log_lines(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, admin_token=ADMIN_TOKEN))
    try:
        client = app.test_client()
        given = client.get("/healthz", headers={"X-Request-Id": "cs-job-42"})
        assert given.headers["X-Request-Id"] == "cs-job-42"
        made = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
        assert len(made.headers["X-Request-Id"]) == 16
    finally:
        app.extensions["vxgate.db"].dispose()


@contextmanager
def json_log_lines() -> Iterator[list[dict[str, Any]]]:
    """The lines logged meanwhile in this process, as the service writes them (JSON),
    formatted when logged: a request's context is gone once it is answered. The list
    fills when the block ends."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(vxgate_log.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def test_a_failing_handler_counts_failed_and_answers_one_line(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler's bug (any exception not the service's own): a 500 with a one-line
    error and no traceback, counted as "failed", logged with its traceback; every line
    logged meanwhile carries the request id."""

    def broken(_session: object, _event: object) -> None:
        raise RuntimeError("handler bug at /srv/vxgate/x.py")

    monkeypatch.setitem(dispatch.COMMANDS, "implement-network", broken)
    app = create_app(Settings(database_url=database_url, admin_token=ADMIN_TOKEN))
    net = Net("613", "10.63.0.0/24", "10.63.0.1")
    body = fuzzing.event_file("implement-network", ADMIN_TOKEN, cp.implement_network(net))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Request-Id": "cs-job-613"}
    try:
        client = app.test_client()
        before = parse_samples(client.get("/metrics").get_data(as_text=True))
        with json_log_lines() as lines:
            answer = client.post("/v1/cloudstack/implement-network", json=body,
                                 headers=headers)
        after = parse_samples(client.get("/metrics").get_data(as_text=True))
    finally:
        app.extensions["vxgate.db"].dispose()

    assert answer.status_code == 500
    error = answer.get_json()["error"]
    assert "\n" not in error and "Traceback" not in error, error
    assert "RuntimeError" in error and "/srv/vxgate" not in error, error  # no internals

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("vxgate_events_total", command="implement-network", outcome="failed") == 1
    assert delta("vxgate_events_total", command="implement-network", outcome="ok") == 0
    assert delta("vxgate_event_duration_seconds_count", command="implement-network") == 1

    assert lines and all(line.get("request_id") == "cs-job-613" for line in lines), lines
    assert all(line.get("network_id") == net.id for line in lines), lines
    event = [line for line in lines if line["logger"] == "provider_service.api.cloudstack"]
    assert len(event) == 1 and event[0]["outcome"] == "failed", event
    failure = [line for line in lines if "exception" in line]
    assert len(failure) == 1 and failure[0]["level"] == "error"
    assert "RuntimeError: handler bug" in failure[0]["exception"]
