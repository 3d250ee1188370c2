"""The service SIGKILLed in the middle of 100 concurrent extension events, then restarted.

"CloudStack operations" (lanes) run side by side, each a network's events in CloudStack's
order through the real entry-point, in one of two shapes (`Shape`):

- lanes of ten: ten lanes, each a network's ten events: implement-network, source NAT,
  two VMs' NICs and a DHCP lease, a static NAT, a port forward or a load balancer, the
  firewall; at most ten events in flight;
- all at once: a hundred lanes of one event each, implement-network of a hundred
  networks, sent together by a hundred threads. Only a lane's first event is independent
  of the others (every later one needs its network implemented), so all hundred can be in
  flight together, and they all race for the same VNI pools.

Once `kill_after` answers have come back, the test holds the service's writes (on
PostgreSQL the row every write transaction updates last, so writers wait with their rows
written, uncommitted) until `in_flight` requests are in the service, then SIGKILLs the
whole gunicorn process group (master and workers) by its id. A lane stops at its first
failure, as a CloudStack operation does. After a restart on the same database:

- every event that was answered with success is in the state;
- the allocation tables are consistent: no VNI twice, no allocation without its network
  or routing domain, none at or above its pool's cursor (it would be handed out again);
- no rule is half-applied (see `half_applied`);

then every event is replayed, and the state and the rendered device configs equal those
of a clean run of the same events on a fresh database, up to which VNI each network got
(allocation order is arrival order, which concurrency makes differ between runs).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.service import Service, reset_postgres_schema, running_service
from provider_service.config import SQLITE_FILE_NAME
from simulator.fabric import wait_until
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import CloudStack, Json, Net, Nic, PublicIp, Registration
from tests.conftest import usable_postgres_url

WORKERS = 3
DOMAIN = "kill.lab"

# --- the events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One extension call; `payload` takes the network as CloudStack knows it then (its
    broadcast URI is stored from implement-network's answer)."""

    lane: int
    command: str
    payload: Callable[[Net], Json]

    def __str__(self) -> str:
        return f"lane {self.lane} {self.command}"


def net_of(lane: int) -> Net:
    return Net(str(500 + lane), f"10.{50 + lane}.0.0/24", f"10.{50 + lane}.0.1")


def ip_of(lane: int, k: int) -> PublicIp:
    return PublicIp(f"203.0.113.{100 + 3 * lane + k}")


def vm_of(lane: int, k: int) -> Nic:
    net = net_of(lane)
    return Nic(str(5000 + 10 * lane + k), f"02:00:0b:{lane:02x}:00:{k + 10:02x}",
               f"{net.cidr.rsplit('.', 1)[0]}.{k + 10}", net.gateway,
               uuid=f"nic-{lane}-{k}", device_id=str(k))


def balancer(lane: int) -> Json:
    return cp.lb_rule(90 + lane, f"web{lane}", ip_of(lane, 2), 80, 8080,
                      [(vm_of(lane, k).ip, 8080, False) for k in range(2)])


def firewall_rules(lane: int, net: Net) -> list[Json]:
    second = (2222, 2222) if lane % 2 == 0 else (80, 80)
    return [cp.fw_rule(1000 + 10 * lane, "ingress", "tcp", ports=(22, 22),
                       public_ip=ip_of(lane, 1).address, source=["198.51.100.0/24"]),
            cp.fw_rule(1001 + 10 * lane, "ingress", "tcp", ports=second,
                       public_ip=ip_of(lane, 2).address, source=["0.0.0.0/0"]),
            cp.fw_rule(1002 + 10 * lane, "egress", "udp", ports=(53, 53), source=[net.cidr],
                       dest=["192.0.2.53/32"])]


def lane_events(lane: int) -> list[Event]:
    """A network's ten events; even lanes forward a port, odd ones balance a load."""
    vm0, vm1 = vm_of(lane, 0), vm_of(lane, 1)
    snat, static, third = (ip_of(lane, k) for k in range(3))
    if lane % 2 == 0:
        ninth = Event(lane, "add-port-forward", lambda n: cp.port_forward(
            n, third, "tcp", "2222", vm1.ip, "22"))
    else:
        ninth = Event(lane, "apply-lb-rules", lambda n: cp.lb(n, [balancer(lane)]))
    return [
        Event(lane, "implement-network", cp.implement_network),
        Event(lane, "assign-ip", lambda n: cp.public_ip(n, snat, True)),
        Event(lane, "prepare-nic", lambda n: cp.prepare_nic(n, vm0, f"vm-{lane}-0")),
        Event(lane, "add-dhcp-entry", lambda n: cp.dhcp_entry(n, vm0, f"vm-{lane}-0", DOMAIN)),
        Event(lane, "prepare-nic", lambda n: cp.prepare_nic(n, vm1, f"vm-{lane}-1")),
        Event(lane, "assign-ip", lambda n: cp.public_ip(n, static, False)),
        Event(lane, "add-static-nat", lambda n: cp.static_nat(n, static, vm0.ip)),
        Event(lane, "assign-ip", lambda n: cp.public_ip(n, third, False)),
        ninth,
        Event(lane, "apply-fw-rules", lambda n: cp.fw_rules(n, firewall_rules(lane, n))),
    ]


@dataclass(frozen=True)
class Shape:
    """`lanes` networks, each its first `events` events in order, one thread a lane; the
    SIGKILL once `kill_after` answers came and `in_flight` requests are held."""

    name: str
    lanes: int
    events: int
    kill_after: int
    in_flight: int

    def all_events(self) -> list[Event]:
        return [event for lane in range(self.lanes) for event in lane_events(lane)[:self.events]]

    def networks(self) -> list[str]:
        return [net_of(lane).id for lane in range(self.lanes)]


LANES_OF_TEN = Shape("lanes-of-ten", lanes=10, events=10, kill_after=40, in_flight=4)
# 60 requests are left when the writes are held: most of them reach the service (3
# workers x 8 threads, the rest in its accept queue) before the kill.
ALL_AT_ONCE = Shape("all-at-once", lanes=100, events=1, kill_after=40, in_flight=10)

# --- running them -------------------------------------------------------------------------


@dataclass
class Outcome:
    event: Event
    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass
class Run:
    """The lanes' outcomes; `enough` is set once `signal_after` answers came back."""

    cs: CloudStack
    signal_after: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    enough: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lane(self, events: list[Event]) -> None:
        net = net_of(events[0].lane)
        for event in events:
            spawn = self.cs.run(event.command, event.payload(net), net, ensure=False)
            with self.lock:
                self.outcomes.append(Outcome(event, spawn.code, spawn.output))
                if len(self.outcomes) == self.signal_after:
                    self.enough.set()
            if spawn.code != 0:
                return  # CloudStack gives the operation up
            if event.command == "implement-network":
                uri = json.loads(spawn.output)["network.broadcast_uri"]
                net = replace(net, vlan=uri.removeprefix("vxlan://"), state="implemented")

    def all_lanes(self, events: list[Event]) -> Run:
        """Every lane of `events` at once, a thread each."""
        lanes: dict[int, list[Event]] = {}
        for event in events:
            lanes.setdefault(event.lane, []).append(event)
        with ThreadPoolExecutor(len(lanes)) as pool:
            list(pool.map(self.lane, lanes.values()))
        return self


def element(service: Service) -> CloudStack:
    return CloudStack(Registration.of(service))


# --- what the service shows -----------------------------------------------------------


def canonical(service: Service, networks: list[str]) -> Json:
    """The state the REST API shows and the replay devices' rendered configs (text only:
    generations count changes, which a killed run has more of), with each VNI replaced by
    the name of what it belongs to."""
    state = cp.recorded_state(service, networks)
    configs = {device: {name: content for name, (_generation, content) in artifacts.items()}
               for device, artifacts in cp.rendered_configs(service).items()}
    names = {}
    for net_id in networks:
        network = state[f"network {net_id}"]["network"]
        names[int(network["broadcast_uri"].removeprefix("vxlan://"))] = f"<l2vni {net_id}>"
        names[network["l3vni"]] = f"<l3vni {net_id}>"
    assert len(names) == 2 * len(networks), names  # no VNI twice

    pools = state.pop("pools")  # numbers, not VNIs: "10000-10999"
    return {"pools": pools, "state": with_names(state, names),
            "configs": {device: {name: in_any_order(with_names(content, names))
                                 for name, content in artifacts.items()}
                        for device, artifacts in configs.items()}}


def in_any_order(content: str) -> Any:
    """A rendered artifact up to the order of its parts: configs list networks by VNI,
    and which network got the lower VNI depends on arrival order. JSON: its lists
    sorted; text (frr.conf): its lines sorted, each naming the VNI it is about."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return sorted(content.splitlines())
    return sorted_lists(parsed)


def sorted_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: sorted_lists(item) for key, item in value.items()}
    if isinstance(value, list):
        return sorted((sorted_lists(item) for item in value),
                      key=lambda item: json.dumps(item, sort_keys=True))
    return value


def with_names(value: Any, names: dict[int, str]) -> Any:
    """`value` with every VNI in `names`, a number or inside a text, replaced by its name."""
    if isinstance(value, dict):
        return {key: with_names(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [with_names(item, names) for item in value]
    if isinstance(value, str):
        return re.sub(r"(?<![\d.])\d{5}(?![\d.])",
                      lambda match: names.get(int(match.group(0)), match.group(0)), value)
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, value)
    return value


def network_states(service: Service, networks: list[str]) -> dict[str, Any]:
    """Each network's recorded state (404 when absent), read once for all the checks: a
    hundred networks' reads are most of a check's time."""
    state = cp.recorded_state(service, networks)
    return {net_id: state[f"network {net_id}"] for net_id in networks}


# --- the checks after the restart -------------------------------------------------------


def check_answered_events_are_recorded(states: dict[str, Any],
                                       outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.ok:
            recorded = answered_event_recorded(outcome, states[net_of(outcome.event.lane).id])
            assert recorded, f"{outcome.event} answered {outcome.output!r} but is not recorded"


def answered_event_recorded(outcome: Outcome, network: Any) -> bool:
    """Whether the state holds what the answered event asked for."""
    if network == 404:
        return False
    event, lane = outcome.event, outcome.event.lane
    payload = event.payload(net_of(lane))
    ips = {ip["address"]: ip for ip in network["public_ips"]}
    nics = {nic["mac"]: nic for nic in network["nics"]}
    match event.command:
        case "implement-network":
            return bool(network["network"]["broadcast_uri"]
                        == json.loads(outcome.output)["network.broadcast_uri"])
        case "assign-ip":
            ip = ips.get(payload["public_ip"])
            return ip is not None and ip["source_nat"] == (payload["source_nat"] == "true")
        case "prepare-nic":
            return bool(nics.get(payload["mac"], {}).get("ip") == payload["ip"])
        case "add-dhcp-entry":
            return bool(nics.get(payload["mac"], {}).get("dhcp_entry"))
        case "add-static-nat":
            static = ips.get(payload["public_ip"], {}).get("static_nat") or {}
            return bool(static.get("private_ip") == payload["private_ip"])
        case "add-port-forward":
            forwards = ips.get(payload["public_ip"], {}).get("port_forwards", [])
            return [(f["public_ports"], f["private_ip"]) for f in forwards] == [
                (payload["public_port"], payload["private_ip"])]
        case "apply-lb-rules":
            return [r["id"] for r in network["load-balancers"]["rules"]] == [90 + lane]
        case "apply-fw-rules":
            return sorted(r["id"] for r in network["firewall"]["rules"]) == [
                r["id"] for r in payload["fw_rules"]["rules"]]
    raise AssertionError(f"no check for {event}")


# Each query lists what must not exist; the name says what it would be.
INCONSISTENCIES = {
    "a number allocated twice": """
        SELECT zone_id, space, number FROM allocations
        GROUP BY zone_id, space, number HAVING count(*) > 1""",
    "an allocation nothing holds (orphan)": """
        SELECT a.id, a.purpose, a.number FROM allocations a
        WHERE a.id NOT IN (SELECT segment_allocation_id FROM networks)
          AND a.id NOT IN (SELECT l3vni_allocation_id FROM routing_domains)
          AND a.id NOT IN (SELECT asn_allocation_id FROM devices
                           WHERE asn_allocation_id IS NOT NULL)""",
    "an allocation of the wrong purpose": """
        SELECT n.id FROM networks n JOIN allocations a ON a.id = n.segment_allocation_id
        WHERE a.purpose NOT IN ('l2vni', 'vlan')
        UNION ALL
        SELECT CAST(r.id AS VARCHAR(64)) FROM routing_domains r
        JOIN allocations a ON a.id = r.l3vni_allocation_id WHERE a.purpose <> 'l3vni'""",
    "an allocation the pool's cursor would hand out again": """
        SELECT a.number, p.cursor FROM allocations a JOIN number_pools p ON p.id = a.pool_id
        WHERE a.number >= p.cursor AND p.cursor <= p.last_number""",
    "a number both allocated and free": """
        SELECT a.number FROM allocations a
        JOIN released_numbers r ON r.pool_id = a.pool_id AND r.number = a.number""",
    "a routing domain of no network or VPC (orphan)": """
        SELECT r.id FROM routing_domains r
        WHERE r.id NOT IN (SELECT routing_domain_id FROM networks)
          AND r.id NOT IN (SELECT routing_domain_id FROM vpcs)""",
    "a port forward on another network's public IP": """
        SELECT f.id FROM port_forwards f JOIN public_ips p ON p.id = f.public_ip_id
        WHERE p.network_id IS NULL OR p.network_id <> f.network_id""",
    "a static NAT on another network's public IP": """
        SELECT s.public_ip_id FROM static_nats s JOIN public_ips p ON p.id = s.public_ip_id
        WHERE p.network_id IS NULL OR p.network_id <> s.network_id""",
    "a load balancer without its backends": """
        SELECT l.rule_id FROM lb_rules l WHERE NOT EXISTS (
            SELECT 1 FROM lb_backends b
            WHERE b.network_id = l.network_id AND b.rule_id = l.rule_id)""",
}


def database_url_of(service: Service) -> str:
    return service.database_url or f"sqlite:///{service.state_dir / SQLITE_FILE_NAME}"


def inconsistencies(service: Service) -> dict[str, list[Any]]:
    engine = create_engine(database_url_of(service), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            found = {name: [tuple(row) for row in connection.execute(text(query))]
                     for name, query in INCONSISTENCIES.items()}
    finally:
        engine.dispose()
    return {name: rows for name, rows in found.items() if rows}


def half_applied(states: dict[str, Any], lanes: int) -> list[str]:
    """Rules only part of whose event is recorded. apply-fw-rules replaces a network's
    whole rule set: half would be some of the payload's rules, or a rule without its
    ports; apply-lb-rules: a rule with fewer backends than sent; add-port-forward and
    add-static-nat are single rows (their consistency with the public IP is a query)."""
    found = []
    for lane in range(lanes):
        network = states[net_of(lane).id]
        if network == 404:
            continue
        sent = firewall_rules(lane, net_of(lane))
        rules = {rule["id"]: rule for rule in network["firewall"]["rules"]}
        if rules and sorted(rules) != [rule["id"] for rule in sent]:
            found.append(f"network {net_of(lane).id}: firewall rules {sorted(rules)}")
        found += [f"network {net_of(lane).id}: firewall rule {rule['id']} without its ports"
                  for rule in rules.values() if rule.get("portStart") is None]
        for rule in network["load-balancers"]["rules"]:
            if len(rule["backends"]) != 2:
                found.append(f"network {net_of(lane).id}: balancer {rule['id']} with "
                             f"backends {rule['backends']}")
    return found


# --- the test -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str:
    """"" for SQLite (in the test's state directory), else the emptied PostgreSQL URL."""
    if request.param == "sqlite":
        return ""
    return usable_postgres_url(reset_postgres_schema)


def clean_run(database: str, tmp_path: Path, shape: Shape) -> Json:
    with running_service(database, workers=WORKERS, state_dir=tmp_path / "clean") as service:
        cp.seed(service)
        run = Run(element(service)).all_lanes(shape.all_events())
        assert [o for o in run.outcomes if not o.ok] == []
        return canonical(service, shape.networks())


@contextmanager
def writes_held(service: Service) -> Iterator[None]:
    """Every write transaction of the service waits while the block runs. PostgreSQL:
    the row each desired-state write bumps last (db._BUMP_VERSION) is locked, so writers
    wait with their other rows written, uncommitted. SQLite: the write lock is taken, so
    writers wait at their BEGIN IMMEDIATE."""
    if not service.database_url:
        connection = sqlite3.connect(service.state_dir / SQLITE_FILE_NAME,
                                     isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    engine = create_engine(service.database_url, poolclass=NullPool)
    try:
        with engine.begin() as transaction:
            transaction.execute(text("SELECT version FROM state_version WHERE id = 1 "
                                     "FOR UPDATE"))
            yield
            transaction.rollback()
    finally:
        engine.dispose()


def open_requests(service: Service) -> int:
    """Connections the service has accepted and not closed: requests in its hands (each
    entry-point run opens one and closes it once answered)."""
    listed = subprocess.run(["ss", "-Htn", "state", "established",
                             f"( sport = :{service.port} )"],
                            capture_output=True, text=True, check=True)
    return len(listed.stdout.splitlines())


def writers_waiting(service: Service) -> int:
    """PostgreSQL backends of the service's database waiting for a lock."""
    engine = create_engine(service.database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar() or 0)
    finally:
        engine.dispose()


def kill_mid_requests(service: Service, run: Run, in_flight: int) -> int:
    """Once `run.signal_after` answers came: hold the writes until `in_flight` requests
    are in the service (on PostgreSQL: in their transactions), then SIGKILL the service's
    whole process group (its own, by id). Returns how many requests it was holding."""
    assert run.enough.wait(timeout=300), "the events never got kill_after answers"
    with writes_held(service):
        def held() -> int:
            if service.database_url:
                return min(open_requests(service), writers_waiting(service))
            return open_requests(service)

        wait_until(f"{in_flight} requests in flight", lambda: held() >= in_flight,
                   timeout=60, interval=0.02)
        holding = held()
        os.killpg(service.pid, signal.SIGKILL)
    return holding


def killed_run(database: str, state_dir: Path, shape: Shape) -> Run:
    """The events until `shape.kill_after` answers came, then SIGKILL mid-requests."""
    with running_service(database, workers=WORKERS, state_dir=state_dir) as service:
        cp.seed(service)
        run = Run(element(service), signal_after=shape.kill_after)
        with ThreadPoolExecutor(1) as killer:
            holding = killer.submit(kill_mid_requests, service, run, shape.in_flight)
            run.all_lanes(shape.all_events())
            assert holding.result() >= shape.in_flight
    return run


@pytest.mark.parametrize("shape", [LANES_OF_TEN, ALL_AT_ONCE], ids=lambda shape: shape.name)
def test_service_killed_mid_events_recovers_and_replays_converge(
        database: str, shape: Shape, tmp_path: Path) -> None:
    if database:
        expected = clean_run(database, tmp_path, shape)
        reset_postgres_schema(database)
    else:
        expected = clean_run("", tmp_path, shape)

    events = shape.all_events()
    run = killed_run(database, tmp_path / "killed", shape)
    failed = [o for o in run.outcomes if not o.ok]
    assert shape.kill_after <= len(run.outcomes) - len(failed) < len(events), len(failed)
    assert failed, "the kill failed no event"
    for outcome in failed:  # what CloudStack logs: one clear line
        assert len(outcome.output.splitlines()) == 1, outcome.output
        assert outcome.output.startswith(f"vxgate: {outcome.event.command}: "), outcome.output
        assert any(why in outcome.output for why in (
            "without an answer", "cannot reach", "Connection refused")), outcome.output
        assert "Traceback" not in outcome.output

    with running_service(database, workers=WORKERS, state_dir=tmp_path / "killed") as service:
        states = network_states(service, shape.networks())
        check_answered_events_are_recorded(states, run.outcomes)
        assert inconsistencies(service) == {}
        assert half_applied(states, shape.lanes) == []

        replay = Run(element(service)).all_lanes(events)
        assert [(str(o.event), o.output) for o in replay.outcomes if not o.ok] == []
        assert inconsistencies(service) == {}
        assert canonical(service, shape.networks()) == expected
