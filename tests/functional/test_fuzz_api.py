"""Fuzzing the REST API: thousands of malformed bodies on every route that takes JSON.

Seeds are the request bodies of the golden cases (tests/golden/*_cases.py), CloudStack's
events (tests/fuzzing.build_events) and a few bodies for the routes those leave out; a
test below keeps that list covering every PUT and POST route. Each case mutates one seed
(tests/fuzzing.Mutator: fields dropped, retyped, nested wrongly; text broken) and, now and
then, a path segment. Every answer must be below 500 with a one-line error when refused,
and a refused request must commit nothing (tests/fuzzing.DbWatch; a full table dump
every 50 cases). Every RENDER_EVERY cases, and at the end, the seeded SoftGate and
hypervisor must still render their configs: what was accepted must not break rendering.
SQLite runs CASES; PostgreSQL fewer (PG_CASES), its watch being a dump per accepted case.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine

from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base
from tests import fuzzing
from tests.conftest import ADMIN_TOKEN
from tests.golden import frr_cases, softgate_cases

SEED = 20240602
CASES = 3000
CHUNK = 300  # cases per fresh copy of the seeded database
PG_CASES = 600  # 3-5 s: the PostgreSQL half takes the same paths, not the volume
RENDER_EVERY = 100
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
Seed = tuple[str, str, Any]  # method, path, body
MAC = "02:00:00:00:01:0b"
EXTRA_SEEDS: list[Seed] = [
    ("PUT", "/v1/devices/sg1/status", {"generation": 1, "objects": [
        {"kind": "network", "id": "301", "state": "error", "reason": "x"}]}),
    ("PUT", "/v1/devices/sg1/config/extra.conf", {"content": "x = 1\n"}),
    ("POST", "/v1/devices/hv1/token", {}),
    ("POST", "/v1/extension-tokens/vxgate", {}),
    ("PUT", f"/v1/networks/301/nics/{MAC}/vm-data/password", {"password": "Pw-1"}),
    ("PUT", f"/v1/networks/301/nics/{MAC}/vm-data/userdata", {"userdata": "#!/bin/sh\n"}),
    ("PUT", f"/v1/networks/301/nics/{MAC}/dhcp", {"mac": MAC, "ip": "10.1.1.11",
                                                  "hostname": "web-1"}),
    ("PUT", f"/v1/networks/301/nics/{MAC}/dns", {"mac": MAC, "ip": "10.1.1.11",
                                                 "hostname": "web-1"}),
    ("POST", "/v1/networks/301/restore", {"dhcp_enabled": True, "dns_enabled": True,
                                          "userdata_enabled": True, "vms": [
                                              {"mac": MAC, "ip": "10.1.1.11",
                                               "hostname": "web-1", "vm_data": []}]}),
    ("PUT", "/v1/devices/hv1/direct-connects/swp5/100", {"network_id": "301"}),
]


def golden_seeds() -> list[Seed]:
    seeds: list[Seed] = []
    for case in (*softgate_cases.CASES.values(), frr_cases.leaf_direct_connect):
        case(lambda method, path, body: seeds.append((method, path, body)))
    return seeds


def all_seeds() -> list[Seed]:
    events = [("POST", f"/v1/cloudstack/{command}",
               fuzzing.event_file(command, ADMIN_TOKEN, payload))
              for command, payload in fuzzing.build_events() + fuzzing.teardown_events()]
    return [seed for seed in golden_seeds() + EXTRA_SEEDS + events if seed[0] != "GET"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded database file; each chunk of cases starts from a copy."""
    path = tmp_path_factory.mktemp("fuzz-api") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    with _app(f"sqlite:///{path}") as app:
        fuzzing.seed(app.test_client(), ADMIN_TOKEN)
    return path


@contextmanager
def _app(url: str) -> Iterator[Flask]:
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN))
    try:
        yield app
    finally:
        app.extensions["vxgate.db"].dispose()


def test_seeds_cover_every_route_that_takes_a_body(template: Path) -> None:
    app = create_app(Settings(database_url="sqlite://", admin_token=ADMIN_TOKEN))
    adapter = app.url_map.bind("localhost")
    covered = {adapter.match(path, method)[0] for method, path, _ in all_seeds()}
    wanted = {rule.endpoint for rule in app.url_map.iter_rules()
              if rule.methods and rule.methods & {"PUT", "POST"}}
    assert wanted - covered == set()


def _path(rng: random.Random, path: str) -> str:
    """Now and then one path segment replaced by something no id looks like."""
    if rng.random() > 0.1:
        return path
    parts = path.split("/")
    index = rng.randrange(2, len(parts))
    parts[index] = quote(rng.choice(("", "x\ny", "..", "%00", "a" * 300, "-1",
                                     "\u00e9", "1;2", "{}", "9" * 30)), safe="")
    return "/".join(parts)


def test_fuzz_api(template: Path, tmp_path: Path) -> None:
    rng, mutator = random.Random(SEED), fuzzing.Mutator(SEED)
    seeds = all_seeds()
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for chunk in range(0, CASES, CHUNK):
        # Accepted mutations wear the world down: each chunk starts from the seeded one.
        path = tmp_path / f"chunk-{chunk}.db"
        shutil.copyfile(template, path)
        with _app(f"sqlite:///{path}") as app:
            _run(app, f"sqlite:///{path}", range(chunk, min(chunk + CHUNK, CASES)),
                 seeds, rng, mutator, statuses)
    _report("SQLite", CASES, started, statuses)


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_fuzz_api_postgres(database_url: str) -> None:
    rng, mutator = random.Random(SEED), fuzzing.Mutator(SEED)
    statuses: dict[int, int] = {}
    started = time.monotonic()
    with _app(database_url) as app:
        fuzzing.seed(app.test_client(), ADMIN_TOKEN)
        _run(app, database_url, range(PG_CASES), all_seeds(), rng, mutator, statuses)
    _report("PostgreSQL", PG_CASES, started, statuses)


def _run(app: Flask, url: str, cases: range, seeds: list[Seed], rng: random.Random,
         mutator: fuzzing.Mutator, statuses: dict[int, int]) -> None:
    """`cases` against one seeded world, counting their answers' statuses."""
    engine = create_engine(url)
    watch = fuzzing.DbWatch(engine)
    try:
        for case in cases:
            status = _one_case(app, engine, watch, case, rng.choice(seeds), rng, mutator)
            statuses[status] = statuses.get(status, 0) + 1
            if (case + 1) % RENDER_EVERY == 0 or case == cases[-1]:
                fuzzing.check_renders(app.test_client(), ADMIN_TOKEN, f"after case {case}")
                watch.changed()  # rendering stores the artifacts: a commit of its own
    finally:
        watch.close()
        engine.dispose()


def _report(database: str, cases: int, started: float, statuses: dict[int, int]) -> None:
    print(f"\nAPI fuzz, {database}: {cases} cases in {time.monotonic() - started:.1f} s; "
          f"statuses {json.dumps(dict(sorted(statuses.items())))}")
    assert sum(count for status, count in statuses.items() if status >= 400) > cases // 2


def _one_case(app: Flask, engine: Engine, watch: fuzzing.DbWatch, case: int, seed: Seed,
              rng: random.Random, mutator: fuzzing.Mutator) -> int:
    method, path, body = seed
    path = _path(rng, path)
    data = mutator.raw(body)
    before = fuzzing.dump_tables(engine) if case % 50 == 0 else None
    response = app.test_client().open(path, method=method, data=data, headers=HEADERS)
    status = response.status_code
    where = f"case {case}: {method} {path} -> {status} {response.get_data()[:300]!r}"
    assert status < 500, where
    if status < 400:
        watch.changed()
        return status
    error = (response.get_json(silent=True) or {}).get("error")
    assert isinstance(error, str) and "\n" not in error, where
    assert "Traceback" not in error, where
    assert not watch.changed(), f"{where}: refused, yet something was committed"
    if before is not None:
        assert fuzzing.dump_tables(engine) == before, where
    return status
