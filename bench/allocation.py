"""The allocation benchmark: C clients create N isolated networks, then replay them all.

Each created network takes one L2VNI (its segment) and one L3VNI (its routing domain), in
one write transaction; "allocations/s" counts networks allocated per second. Afterwards:
N networks listed with N distinct segment ids and N distinct L3VNIs, and a replay of every
creation answers exactly what the creation did while the pools stay as they were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import sysinfo
from bench.load import ClientPool, ClientResult, Request, in_request_order
from bench.service import Service

ZONE_ID = "1"
PHYSNET_ID = "200"
PHYSNET = {"zone_id": ZONE_ID, "name": "guest",
           "l2vni_range": "10000-999999", "l3vni_range": "1000000-1999999"}
MAX_NETWORKS = 256 * 256  # one 10.x.y.0/24 each
GOAL_RATE = 2000.0  # networks allocated per second
GOAL_P99_MS = 10.0
LOG_LINES_ON_ERROR = 25


@dataclass(frozen=True)
class PhaseStats:
    name: str
    requests: int
    clients: int
    wall_s: float
    rate: float  # requests per second of wall time
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    failures: list[str]
    connections_opened: int
    client_cpu_s: float
    cpu: sysinfo.CpuUse


@dataclass(frozen=True)
class Outcome:
    """Per network, in network order: what the service answered."""

    statuses: list[int]
    bodies: list[bytes]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class AllocationReport:
    backend: str
    networks: int
    clients: int
    create: PhaseStats
    replay: PhaseStats
    checks: list[Check]
    worker_connections: list[int]  # the clients' connections per server worker
    log_tail: str = ""  # the end of the service log, kept when a request failed

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


# --- workload --------------------------------------------------------------------------


def network_id(index: int) -> str:
    return str(index + 1)


def network_body(index: int) -> dict[str, str]:
    x, y = divmod(index, 256)
    return {"zone_id": ZONE_ID, "cidr": f"10.{x}.{y}.0/24", "gateway": f"10.{x}.{y}.1"}


def network_requests(networks: int) -> list[Request]:
    if not 0 < networks <= MAX_NETWORKS:
        raise ValueError(f"networks: 1 to {MAX_NETWORKS}, not {networks}")
    return [Request("PUT", f"/v1/networks/{network_id(i)}", json.dumps(network_body(i)).encode())
            for i in range(networks)]


def seed(service: Service) -> None:
    service.ok("PUT", f"/v1/zones/{ZONE_ID}", {})
    service.ok("PUT", f"/v1/physical-networks/{PHYSNET_ID}", PHYSNET)


# --- running ---------------------------------------------------------------------------


def run_allocation(service: Service, networks: int, clients: int) -> AllocationReport:
    """Seed, create N networks with C clients, verify, replay them all, verify again."""
    seed(service)
    requests = network_requests(networks)
    with ClientPool(service.host, service.port, service.headers(), requests, clients) as pool:
        spread = sysinfo.connections_per_process(service.port, service.pid)
        create, created = _phase("create", pool, service)
        listing = service.ok("GET", "/v1/networks")
        used_after_create = pool_usage(service)
        replay, replayed = _phase("replay", pool, service)
        used_after_replay = pool_usage(service)
    checks = [
        *check_created(networks, created, listing, used_after_create),
        *check_replay(created, replayed, used_after_create, used_after_replay),
        check_connections(clients, create, replay),
    ]
    failed = create.errors or replay.errors
    return AllocationReport(service.backend, networks, clients, create, replay, checks, spread,
                            service.log_tail(LOG_LINES_ON_ERROR) if failed else "")


def pool_usage(service: Service) -> dict[str, int]:
    pools = service.ok("GET", f"/v1/physical-networks/{PHYSNET_ID}")["pools"]
    return {purpose: int(pool["used"]) for purpose, pool in pools.items()}


def _phase(name: str, pool: ClientPool, service: Service) -> tuple[PhaseStats, Outcome]:
    database = service.database_name
    before = sysinfo.snapshot(service.pid, database)
    results = pool.run_phase()
    cpu = sysinfo.CpuUse.between(before, sysinfo.snapshot(service.pid, database))
    outcome = Outcome(in_request_order(results, "statuses"), in_request_order(results, "bodies"))
    return summarize(name, results, cpu), outcome


def summarize(name: str, results: Sequence[ClientResult], cpu: sysinfo.CpuUse) -> PhaseStats:
    latencies = sorted(ns for result in results for ns in result.latencies_ns)
    wall_s = (max(r.finished_ns for r in results) - min(r.started_ns for r in results)) / 1e9
    statuses = [status for result in results for status in result.statuses]
    return PhaseStats(
        name=name, requests=len(latencies), clients=len(results), wall_s=wall_s,
        rate=len(latencies) / wall_s if wall_s > 0 else math.inf,
        p50_ms=percentile(latencies, 50) / 1e6, p90_ms=percentile(latencies, 90) / 1e6,
        p99_ms=percentile(latencies, 99) / 1e6, max_ms=latencies[-1] / 1e6 if latencies else 0,
        errors=sum(1 for status in statuses if not 200 <= status < 300),
        failures=[failure for result in results for failure in result.failures],
        connections_opened=sum(r.connections_opened for r in results),
        client_cpu_s=sum(r.cpu_s for r in results), cpu=cpu,
    )


def percentile(ordered: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not ordered:
        return 0.0
    return float(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)])


# --- checks ----------------------------------------------------------------------------


def check_created(networks: int, created: Outcome, listing: list[dict[str, Any]],
                  used: dict[str, int]) -> list[Check]:
    answers = _decoded(created)
    segments = {net["segment"]["id"] for net in listing}
    l3vnis = {net["l3vni"] for net in listing}
    expected_ids = {network_id(i) for i in range(networks)}
    return [
        _zero_errors("create", created),
        Check("networks listed", {net["id"] for net in listing} == expected_ids
              and len(listing) == networks, f"{len(listing)} listed, {networks} created"),
        Check("distinct segment ids", len(segments) == networks, f"{len(segments)} distinct"),
        Check("distinct l3vnis", len(l3vnis) == networks, f"{len(l3vnis)} distinct"),
        Check("segment ids and l3vnis disjoint", not segments & l3vnis,
              f"{len(segments & l3vnis)} shared"),
        Check("listing matches creation answers",
              all(answers.get(net["id"]) == net for net in listing), "GET /v1/networks"),
        Check("pool usage after create", used.get("l2vni") == networks
              and used.get("l3vni") == networks, f"{used}"),
    ]


def check_replay(created: Outcome, replayed: Outcome, used_before: dict[str, int],
                 used_after: dict[str, int]) -> list[Check]:
    pairs = zip(created.statuses, created.bodies, replayed.statuses, replayed.bodies,
                strict=True)
    same = sum(1 for status, first, status_again, again in pairs
               if _ok(status) and status_again == status and _json(first) == _json(again))
    total = len(created.bodies)
    return [
        _zero_errors("replay", replayed),
        Check("replay answers identical", same == total,
              f"{same}/{total} answered 2xx with the same JSON both times"),
        Check("pool usage unchanged by replay", used_before == used_after,
              f"{used_before} -> {used_after}"),
    ]


def check_connections(clients: int, *phases: PhaseStats) -> Check:
    opened = sum(phase.connections_opened for phase in phases)
    requests = sum(phase.requests for phase in phases)
    return Check("keep-alive connections reused", opened == 0,
                 f"{clients} connections for {requests} requests, {opened} reconnects")


def _ok(status: int) -> bool:
    return 200 <= status < 300


def _zero_errors(name: str, outcome: Outcome) -> Check:
    errors = sum(1 for status in outcome.statuses if not _ok(status))
    return Check(f"{name}: zero errors", errors == 0, f"{errors} errors")


def _decoded(outcome: Outcome) -> dict[str, Any]:
    answers = (_json(body) for body, status in zip(outcome.bodies, outcome.statuses, strict=True)
               if 200 <= status < 300)
    return {answer["id"]: answer for answer in answers if isinstance(answer, dict)}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


# --- report ----------------------------------------------------------------------------


def render(report: AllocationReport) -> list[str]:
    spread = "/".join(str(count) for count in report.worker_connections) or "?"
    lines = [f"== {report.backend}: {report.networks} networks, {report.clients} clients "
             f"(connections per server worker: {spread})"]
    for phase in (report.create, report.replay):
        lines += render_phase(phase)
    lines += [f"check {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in report.checks]
    if report.log_tail:
        lines += ["service log, last lines:", *(f"  | {line}" for line in
                                                report.log_tail.splitlines())]
    lines += render_goals(report.create)
    return lines


def render_phase(phase: PhaseStats) -> list[str]:
    capacity = phase.wall_s * sysinfo.cores()
    cpu = phase.cpu
    ours = phase.client_cpu_s + cpu.service_s + cpu.postgres_s
    others = max(0.0, cpu.machine_busy_s - ours)
    lines = [
        f"{phase.name:>7}: {phase.requests} requests in {phase.wall_s:.3f} s wall = "
        f"{phase.rate:,.0f} {'allocations' if phase.name == 'create' else 'requests'}/s",
        f"{'':>9}latency ms: p50 {phase.p50_ms:.2f}  p90 {phase.p90_ms:.2f}  "
        f"p99 {phase.p99_ms:.2f}  max {phase.max_ms:.2f}   errors {phase.errors}",
        f"{'':>9}cpu s: clients {phase.client_cpu_s:.2f} ({_share(phase.client_cpu_s, capacity)}"
        f" of {capacity:.2f} core-s), service {cpu.service_s:.2f} "
        f"({_share(cpu.service_s, capacity)}), postgres {cpu.postgres_s:.2f} "
        f"({_share(cpu.postgres_s, capacity)}), everything else {others:.2f} "
        f"({_share(others, capacity)}); machine busy {_share(cpu.machine_busy_s, capacity)}",
        f"{'':>9}cpu-ms per request: client {_per(phase.client_cpu_s, phase.requests)}, "
        f"service {_per(cpu.service_s, phase.requests)}, postgres "
        f"{_per(cpu.postgres_s, phase.requests)}; cpu-bound ceiling on {sysinfo.cores()} "
        f"otherwise idle cores: {_ceiling(ours, phase.requests)}/s",
    ]
    return lines + [f"{'':>9}error: {failure}" for failure in phase.failures[:5]]


def render_goals(create: PhaseStats) -> list[str]:
    # The goals are judged on the wrk run (bench/wrk_load.py): these clients cost the
    # service a sixth of the machine. Shown for comparison only.
    return [f"(python clients: {create.rate:,.0f} allocations/s, p99 {create.p99_ms:.2f} ms;"
            f" goals {GOAL_RATE:,.0f}/s and {GOAL_P99_MS:g} ms are judged on wrk below)"]


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "-"


def _ceiling(cpu_s: float, requests: int) -> str:
    """Requests per second if nothing else ran and our CPU was the only limit."""
    return f"{sysinfo.cores() * requests / cpu_s:,.0f}" if cpu_s > 0 else "-"


def _per(cpu_s: float, requests: int) -> str:
    return f"{1000 * cpu_s / requests:.2f}" if requests else "-"
