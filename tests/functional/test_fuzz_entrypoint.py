"""Fuzzing the extension entry-point: thousands of malformed payload files, seeded.

Cases derive from build_events() and teardown_events() (the real payload builders):
fields dropped, duplicated, retyped, nested wrongly, huge, negative, unicode; files
truncated, not UTF-8, empty, not JSON; argv and the legacy flag form broken too. Each
runs plugin/vxgate_extension.py's main() in-process, its HTTP request handed to the Flask
app (SQLite). Every case must end with exit 0, or with one line "vxgate: <command>: ..."
and no commit at all; never a traceback, an "unexpected" error or an HTTP 500. Before
each rebuild of the world and at the end, the seeded SoftGate and hypervisor must still
render their configs. PostgreSQL runs fewer in-process cases (PG_CASES). A few hundred
more run through the real executable, against a real service.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine

from bench.service import Service
from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base
from simulator.cloudstack import element as nee
from tests import fuzzing
from tests.conftest import ADMIN_TOKEN

SEED = 20240601
IN_PROCESS_CASES = 3000
PG_CASES = 600  # 3-7 s: the PostgreSQL half takes the same paths, not the volume
EXECUTABLE_CASES = 200
REPLAY_EVERY = 250  # rebuild the world now and then: accepted mutations wear it down


@dataclass
class Outcome:
    code: int
    output: str
    statuses: list[int]


def _events() -> list[fuzzing.Event]:
    return fuzzing.build_events() + fuzzing.teardown_events()


def _argv(rng: random.Random, mutator: fuzzing.Mutator, directory: Path
          ) -> tuple[list[str], bytes | None]:
    """(argv with "@FILE" where the payload file goes, the file's content or None)."""
    command, payload = rng.choice(_events())
    event = fuzzing.event_file(command, ADMIN_TOKEN, payload)
    roll = rng.random()
    if roll < 0.9:
        target = event if rng.random() < 0.3 else event.get("payload", event)
        mutated = mutator.raw(target)
        content = mutated if target is event else _wrap(event, mutated)
        timeout = rng.choice(("60", "60", "0", "-5", "abc", "1e9", "", "nan", "inf"))
        return [command, "@FILE", timeout], content
    if roll < 0.95:  # argv itself broken
        return rng.choice((
            [], [command], ["NOT-A-COMMAND", "@FILE", "60"], ["a" * 100, "@FILE", "60"],
            [command, str(directory / "missing.payload"), "60"], [command, str(directory)],
            ["implement-network\n", "@FILE", "60"], [command, "@FILE", "60", "extra"],
        )), json.dumps(event).encode()
    # the legacy flag form, its values mutated
    flags = [part for key, value in sorted(payload.items()) if isinstance(value, str)
             for part in (f"--{key.replace('_', '-')}", value)]
    blobs = ["--physical-network-extension-details",
             nee.gson(fuzzing.registration(ADMIN_TOKEN)), "--network-extension-details", "{}"]
    argv = [command, *flags, *blobs]
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(1, len(argv))
        argv[index] = rng.choice(("", "{", "[" * 5000, "--", "x\ny", "\udcff", "null",
                                  "--lb-rules", "--vm-data-file", "--userdata", "%%%"))
    return argv, None


def _wrap(event: dict[str, Any], payload_text: bytes) -> bytes:
    """The envelope with the payload's text (valid JSON or not) put in place."""
    marker = "@@PAYLOAD@@"
    text = json.dumps({**event, "payload": marker}).encode()
    return text.replace(json.dumps(marker).encode(), payload_text)


def check(outcome: Outcome, argv: list[str]) -> None:
    where = f"{argv[:1]} -> {outcome.code}: {outcome.output[:300]!r}"
    assert 500 not in outcome.statuses, where
    assert "Traceback" not in outcome.output and "unexpected" not in outcome.output, where
    if outcome.code != 0:
        lines = outcome.output.strip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith("vxgate: "), where
        assert outcome.code in (1, 2), where


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, Path]]:
    directory = tmp_path_factory.mktemp("fuzz-entrypoint")
    url = f"sqlite:///{directory / 'vxgate.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    application = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN))
    fuzzing.seed(application.test_client(), ADMIN_TOKEN)
    yield application, directory
    application.extensions["vxgate.db"].dispose()


def test_fuzz_entry_point_in_process(app: tuple[Flask, Path]) -> None:
    application, directory = app
    _fuzz_in_process(application, f"sqlite:///{directory / 'vxgate.db'}", directory,
                     IN_PROCESS_CASES)


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_fuzz_entry_point_in_process_postgres(database_url: str, tmp_path: Path) -> None:
    application = create_app(Settings(database_url=database_url, admin_token=ADMIN_TOKEN))
    try:
        fuzzing.seed(application.test_client(), ADMIN_TOKEN)
        _fuzz_in_process(application, database_url, tmp_path, PG_CASES)
    finally:
        application.extensions["vxgate.db"].dispose()


def _fuzz_in_process(application: Flask, url: str, directory: Path, cases: int) -> None:
    engine = create_engine(url)
    watch = fuzzing.DbWatch(engine)
    rng, mutator = random.Random(SEED), fuzzing.Mutator(SEED)
    client = application.test_client()
    started, counts = time.monotonic(), {"ok": 0, "refused": 0}
    try:
        for case in range(cases):
            if case % REPLAY_EVERY == 0:
                if case:  # what was accepted since the last rebuild must still render
                    fuzzing.check_renders(client, ADMIN_TOKEN, f"before case {case}")
                fuzzing.replay(client, ADMIN_TOKEN, fuzzing.build_events())
                watch.changed()
            outcome = _one_case(client, engine, watch, case, rng, mutator, directory)
            counts["ok" if outcome.code == 0 else "refused"] += 1
        fuzzing.check_renders(client, ADMIN_TOKEN, f"after case {cases - 1}")
    finally:
        watch.close()
        engine.dispose()
    print(f"\nentry-point fuzz, in-process, {engine.dialect.name}: {cases} cases "
          f"({counts['ok']} accepted, {counts['refused']} refused) in "
          f"{time.monotonic() - started:.1f} s")
    assert counts["refused"] > cases // 2


def _one_case(client: FlaskClient, engine: Engine, watch: fuzzing.DbWatch, case: int,
              rng: random.Random, mutator: fuzzing.Mutator, directory: Path) -> Outcome:
    argv, content = _argv(rng, mutator, directory)
    before = fuzzing.dump_tables(engine) if case % 50 == 0 else None
    with fuzzing.payload_file(directory, content or b"") as path:
        argv = [path if part == "@FILE" else part for part in argv]
        outcome = Outcome(*fuzzing.run_entry_point(client, argv))
    check(outcome, argv)
    if outcome.code == 0:
        watch.changed()
        return outcome
    assert not watch.changed(), f"case {case}: refused, yet something was committed"
    if before is not None:
        assert fuzzing.dump_tables(engine) == before, f"case {case}"
    return outcome


def test_fuzz_entry_point_executable(service: Service, tmp_path: Path) -> None:
    """The real executable (its own interpreter, argv, stdout), against the real service."""
    rng, mutator = random.Random(SEED + 1), fuzzing.Mutator(SEED + 1)
    registration = {**fuzzing.registration(service.token),
                    "vxgate.url": f"http://{service.host}:{service.port}"}
    started = time.monotonic()
    # Only the payload is mutated: the registration holds the service's address, and a
    # mutated one could send a request (or a DNS query) off this machine.
    events = [(c, p) for c, p in _events() if c != "custom-action"]
    for _ in range(EXECUTABLE_CASES):
        command, payload = rng.choice(events)
        content = _wrap(nee.event_of(command, registration, {}, payload),
                        mutator.raw(payload))
        with nee.payload_file(command, content) as path:
            code, output = nee._spawn([command, path, "60"])
        outcome = Outcome(code, output, [])
        check(outcome, [command])
        assert "HTTP 500" not in output and "internal error" not in output, output
    print(f"\nentry-point fuzz, executable: {EXECUTABLE_CASES} cases in "
          f"{time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("form", ["payload-file", "legacy"])
def test_deeply_nested_json_fails_in_one_line(app: tuple[Flask, Path], form: str) -> None:
    """Regression (fuzz): nesting deeper than the parser recurses was 'unexpected
    RecursionError'; it is a payload that is not JSON, like any other."""
    application, directory = app
    deep = "[" * 100_000 + "]" * 100_000
    with fuzzing.payload_file(directory, deep.encode()) as path:
        argv = ["implement-network", path, "60"] if form == "payload-file" else \
            ["apply-lb-rules", "--network-id", "301", "--lb-rules", deep]
        code, output, statuses = fuzzing.run_entry_point(application.test_client(), argv)
    assert (code, statuses) == ((1, []) if form == "payload-file" else (2, []))
    assert output.count("\n") == 1 and "nested too deeply" in output, output
