"""Concurrent network creation against a real gunicorn service (2 workers), on SQLite and
on PostgreSQL: distinct VNIs, no errors, and replays that change nothing.

Each test starts its own `vxgate-service` (bench.service) with client processes that each
keep one HTTP/1.1 connection (bench.load); nothing here depends on timing. PostgreSQL
comes from VXGATE_TEST_POSTGRES_URL, whose schema the test empties first (the service
migrates it on start); without it the PostgreSQL half skips, and under CI it fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bench.allocation import (
    network_body,
    network_id,
    pool_usage,
    render,
    run_allocation,
    seed,
)
from bench.load import ClientPool, Request, in_request_order
from bench.service import Service, reset_postgres_schema, running_service
from tests.conftest import usable_postgres_url

CLIENTS = 8
NETWORKS = CLIENTS * 50
SAME_TIME_NETWORKS = 25  # each created by all clients at once


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    """A fresh gunicorn service with 2 workers on an empty database, seeded by the test."""
    url = usable_postgres_url(reset_postgres_schema) if request.param == "postgres" else ""
    with running_service(url, workers=2) as running:
        yield running


def test_concurrent_creates_get_distinct_vnis_and_replay_changes_nothing(
    service: Service,
) -> None:
    report = run_allocation(service, NETWORKS, CLIENTS)

    failed = [check for check in report.checks if not check.ok]
    assert not failed, "\n".join(render(report))
    assert report.create.errors == report.replay.errors == 0
    assert report.create.requests == report.replay.requests == NETWORKS


def test_clients_creating_the_same_networks_at_once_converge(service: Service) -> None:
    """Every client sends every creation, side by side: one network and one VNI pair each,
    and all answers for a network are the same (a lost race becomes a replay)."""
    seed(service)
    requests = [_create(index) for index in range(SAME_TIME_NETWORKS) for _ in range(CLIENTS)]
    with ClientPool(service.host, service.port, service.headers(), requests, CLIENTS) as pool:
        results = pool.run_phase()
    statuses = in_request_order(results, "statuses")
    answers = [json.loads(body) for body in in_request_order(results, "bodies")]

    assert [s for s in statuses if s != 200] == [], _first_failures(results)
    by_network: dict[str, list[Any]] = {}
    for answer in answers:
        by_network.setdefault(answer["id"], []).append(answer)
    assert len(by_network) == SAME_TIME_NETWORKS
    assert all(all(a == same[0] for a in same) for same in by_network.values())
    used = pool_usage(service)
    assert used["l2vni"] == used["l3vni"] == SAME_TIME_NETWORKS, used
    assert len(service.ok("GET", "/v1/networks")) == SAME_TIME_NETWORKS


def _create(index: int) -> Request:
    return Request("PUT", f"/v1/networks/{network_id(index)}",
                   json.dumps(network_body(index)).encode())


def _first_failures(results: list[Any]) -> str:
    return "\n".join(failure for result in results for failure in result.failures)
