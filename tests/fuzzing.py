"""Tools of the injection and fuzz tests: a cheap dump of every table, the entry-point run
in-process against the Flask app, and a seeded generator of malformed JSON payloads.

The generator derives its cases from valid payloads (the real payload builders' and the
goldens' request bodies): it drops, duplicates and retypes fields, nests them wrongly,
puts huge, negative, unicode and hostile values in them, and breaks the JSON text itself
(truncation, non-UTF-8 bytes, bad literals, emptiness). Same seed, same cases.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from plugin import vxgate_extension
from provider_service.models import Base
from simulator.cloudstack import element as nee

Dump = dict[str, list[str]]


def dump_tables(engine: Engine) -> Dump:
    """Every row of every table, as sorted text: equal dumps, equal databases."""
    with engine.connect() as connection:
        return {table.name: sorted(repr(tuple(row)) for row in
                                   connection.execute(select(table)))
                for table in Base.metadata.sorted_tables}


class DbWatch:
    """Whether anything was committed since the last look, cheaply. SQLite: its
    data_version changes with every commit of another connection. PostgreSQL: a write
    (committed or rolled back) takes a transaction id, so while the next id to assign
    has not moved nothing can have been committed; when it has moved, a full dump says
    whether the data changed (a refused request's rolled-back write did not)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.connection = None if self.postgres else engine.raw_connection()
        self._next_xid = -1
        self._dump: Dump = {}
        self.seen = self.version()

    def version(self) -> object:
        return self._postgres_version() if self.postgres else self._sqlite_version()

    def _sqlite_version(self) -> int:
        assert self.connection is not None
        cursor = self.connection.cursor()
        try:
            cursor.execute("PRAGMA data_version")
            row = cursor.fetchone()
            assert row is not None
            return int(row[0])
        finally:
            cursor.close()

    def _postgres_version(self) -> Dump:
        with self.engine.connect() as connection:
            next_xid = int(connection.exec_driver_sql(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())").scalar_one())
        if next_xid != self._next_xid:
            self._next_xid, self._dump = next_xid, dump_tables(self.engine)
        return self._dump

    def changed(self) -> bool:
        """True once per commit (or run of commits) since the last call."""
        now = self.version()
        changed, self.seen = now != self.seen, now
        return changed

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def dump_difference(before: Dump, after: Dump) -> str:
    """The first table whose rows changed, for an assertion message ("" when none)."""
    for name in before:
        if before[name] != after.get(name):
            return f"table {name} changed: {len(before[name])} -> {len(after[name])} rows"
    return ""


# --- the entry-point, in-process -------------------------------------------------------


def run_entry_point(client: FlaskClient, argv: list[str]) -> tuple[int, str, list[int]]:
    """plugin/vxgate_extension.py's main() with its one HTTP request sent to the test
    client: (exit code, everything it printed, the HTTP statuses the service answered)."""
    statuses: list[int] = []

    def post(url: str, path: str, token: str, body: bytes, deadline: float
             ) -> tuple[int, object]:
        response = client.post(path, data=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        statuses.append(response.status_code)
        return response.status_code, response.get_json(silent=True)

    printed = io.StringIO()
    original = vxgate_extension.post
    vxgate_extension.post = post
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = vxgate_extension.main(["vxgate_extension.py", *argv])
    finally:
        vxgate_extension.post = original
    return code, printed.getvalue(), statuses


@contextlib.contextmanager
def payload_file(directory: Path, content: bytes) -> Iterator[str]:
    path = directory / "cs-extnet-fuzz.payload"
    path.write_bytes(content)
    try:
        yield str(path)
    finally:
        path.unlink()


# --- the generator ---------------------------------------------------------------------

# Values a field may be replaced with: wrong types, extremes, unicode, hostile text.
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, -(2**63), 2**63, 2**64 + 1, 10**40, -(10**40), 1.5, -0.0,
    1e308, "", " ", "0", "-1", "1e400", "65536", "99999999999999999999999", "true",
    "null", [], {}, [[[]]], {"": {}}, "\u00fc\u00df\u4e2d\U0001d11e", "\u2028\u2029",
    "\u202e", "x\ny", "x\r\ny", "a;b", 'a"b', "a'b", "{}", "a#b", "../../etc/passwd",
    "%s%n", "\\", "x" * 5000, "\ufeff", "\udcff", "\x7f", "\x1b[31m", "0x10", "1,2",
    "10.0.0.1\nserver=203.0.113.9", "2001:db8::1%eth0", "255.255.255.255/33",
)
# The JSON text itself broken: what a truncated or corrupted payload file looks like.
RAW_BREAKERS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    lambda r, t: t[: r.randrange(len(t) + 1)],  # truncated
    lambda r, t: b"",
    lambda r, t: b"   \n",
    lambda r, t: t.replace(b'"', b"'", 1),
    lambda r, t: _insert(r, t, b"\xff\xfe"),  # non-UTF-8 bytes
    lambda r, t: _insert(r, t, b"\xc3"),  # a UTF-8 sequence cut short
    lambda r, t: b"\xef\xbb\xbf" + t,  # a BOM
    lambda r, t: t + b"garbage",
    lambda r, t: t + b"\x00",
    lambda r, t: b"[" * 50_000 + b"]" * 50_000,  # deeper than any parser recurses
    lambda r, t: b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    lambda r, t: b"NaN",
    lambda r, t: b'{"payload": Infinity}',
    lambda r, t: b"null",
    lambda r, t: b"[]",
    lambda r, t: b'"just a string"',
    lambda r, t: b"12345678901234567890123456789",
    lambda r, t: _duplicate_first_key(t),
    lambda r, t: _insert(r, t, b"\\ud800"),  # a lone surrogate escape
    lambda r, t: _insert(r, t, b"\\u0000"),
)


def _insert(rng: random.Random, text: bytes, piece: bytes) -> bytes:
    at = rng.randrange(len(text) + 1)
    return text[:at] + piece + text[at:]


def _duplicate_first_key(text: bytes) -> bytes:
    """{"k": v, ...} → {"k": v, "k": "dup", ...}: JSON parsers keep the last one."""
    if not text.startswith(b'{"'):
        return text + text
    key = text[1:text.index(b'"', 2) + 1]
    return b"{" + key + b':"dup",' + text[1:]


class Mutator:
    """Malformed variants of valid JSON payloads, deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def json_value(self, value: Any) -> Any:
        """`value` with one to three structural or value mutations somewhere inside."""
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            value = self._mutate_somewhere(value)
        return value

    def raw(self, value: Any) -> bytes:
        """The JSON text of a mutated value, or of a valid one broken as text."""
        if self.rng.random() < 0.7:
            return json.dumps(self.json_value(value)).encode("utf-8", "surrogatepass")
        text = json.dumps(value).encode()
        return self.rng.choice(RAW_BREAKERS)(self.rng, text)

    def _mutate_somewhere(self, value: Any) -> Any:
        containers = list(_containers(value))
        if not containers or self.rng.random() < 0.05:
            return self._replace(value)
        path = self.rng.choice(containers)
        return _update(value, path, self._mutate_container)

    def _mutate_container(self, container: Any) -> Any:
        rng = self.rng
        if isinstance(container, dict):
            keys = list(container)
            choice = rng.randrange(6)
            if choice == 0 and keys:  # drop a field
                return {k: v for k, v in container.items() if k != rng.choice(keys)}
            if choice == 1:  # an unknown field
                return {**container, rng.choice(("x", "", "payload", "\u00fc", "id")): 1}
            if choice == 2 and keys:  # wrong nesting: the field wrapped or flattened
                key = rng.choice(keys)
                wrapped = rng.choice(([container[key]], {key: container[key]}))
                return {**container, key: wrapped}
            if choice == 3:  # the object becomes a list of its values
                return list(container.values())
            if keys:  # retype one field
                key = rng.choice(keys)
                return {**container, key: self._replace(container[key])}
            return self._replace(container)
        items = list(container)
        choice = rng.randrange(4)
        if choice == 0 and items:
            return [*items, items[rng.randrange(len(items))]]  # a duplicate
        if choice == 1 and items:
            del items[rng.randrange(len(items))]
            return items
        if choice == 2:
            return [*items, self._replace(None)]
        if items:
            index = rng.randrange(len(items))
            items[index] = self._replace(items[index])
            return items
        return {"": items}

    def _replace(self, value: Any) -> Any:
        rng = self.rng
        if isinstance(value, str) and value and rng.random() < 0.3:
            at = rng.randrange(len(value) + 1)  # the valid text with something inside
            return value[:at] + rng.choice(("\n", "\x00", ";", '"', "}", "\u00e9", "#",
                                            "\ud800", " ")) + value[at:]
        if isinstance(value, int | float) and not isinstance(value, bool) and rng.random() < 0.3:
            return rng.choice((-value, value * 10**12, value + 0.5, str(value), -1))
        return rng.choice(ODD_VALUES)


def _containers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict | list):
        yield path
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _containers(item, (*path, key))


def _update(value: Any, path: tuple[Any, ...], change: Callable[[Any], Any]) -> Any:
    if not path:
        return change(value)
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _update(value[head], rest, change)}
    copy = list(value)
    copy[head] = _update(copy[head], rest, change)
    return copy


# --- valid CloudStack events: the seeds of the entry-point fuzz and the injection tests -

NET = nee.Net("301", "10.1.1.0/24", "10.1.1.1")
VPC = nee.Vpc("400", "10.20.0.0/16")
TIER = nee.Net("401", "10.20.1.0/24", "10.20.1.1", vpc=VPC)
NIC = nee.Nic("7", "02:00:00:00:01:0b", "10.1.1.11", "10.1.1.1",
              uuid="5b0e7c1a-0000-4000-8000-000000000007")
TIER_NIC = nee.Nic("8", "02:00:00:00:02:0c", "10.20.1.12", "10.20.1.1")
SNAT, STATIC, FORWARD, LB_IP = (nee.PublicIp(f"203.0.113.{k}") for k in (10, 11, 12, 13))
VPC_SNAT, VPC_SNAT_2 = nee.PublicIp("203.0.113.20"), nee.PublicIp("203.0.113.21")
USER_DATA = "#cloud-config\nruncmd:\n - [sh, -c, 'echo a=b > /tmp/x']\n"
Event = tuple[str, dict[str, Any]]  # (command, payload)


def build_events() -> list[Event]:
    """An isolated network with NAT, firewall, a load balancer and a VM, and a VPC with a
    tier, an ACL and a VM: every command that builds, in CloudStack's order."""
    vm_data = nee.vm_data(NIC, "web-1", 11, userdata=USER_DATA, public_key="ssh-ed25519 AAAA")
    return [
        ("ensure-network-device", nee.ensure_network(NET)),
        ("implement-network", nee.implement_network(NET)),
        ("assign-ip", nee.public_ip(NET, SNAT, True)),
        ("add-static-nat", nee.static_nat(NET, STATIC, NIC.ip)),
        ("add-port-forward", nee.port_forward(NET, FORWARD, "tcp", "80", NIC.ip, "8080")),
        ("apply-fw-rules", nee.fw_rules(NET, [
            nee.fw_rule(1, "ingress", "tcp", ports=(22, 22), public_ip=SNAT.address,
                        source=["198.51.100.0/24"]),
            nee.fw_rule(2, "egress", "icmp", icmp=(-1, -1), dest=["192.0.2.0/24"])])),
        ("assign-ip", nee.public_ip(NET, LB_IP, False)),
        ("apply-lb-rules", nee.lb(NET, [nee.lb_rule(5, "web", LB_IP, 80, 8080,
                                                    [(NIC.ip, 8080, False)])])),
        ("prepare-nic", nee.prepare_nic(NET, NIC, "web-1")),
        ("add-dhcp-entry", nee.dhcp_entry(NET, NIC, "web-1", "cs.example")),
        ("config-dhcp-subnet", nee.config_subnet(NET, NIC, "cs.example")),
        ("add-dns-entry", nee.dns_entry(NET, NIC, "web-1", "cs.example")),
        ("config-dns-subnet", nee.config_subnet(NET, NIC, "cs.example")),
        ("save-vm-data", nee.save_vm_data(NET, NIC, vm_data)),
        ("save-password", nee.save_item(NET, NIC, "password", "S3cret-pw")),
        ("save-userdata", nee.save_item(NET, NIC, "userdata", USER_DATA)),
        ("save-sshkey", nee.save_item(NET, NIC, "sshkey", "ssh-ed25519 AAAA u@h")),
        ("save-hypervisor-hostname", nee.save_item(NET, NIC, "hypervisor_hostname", "kvm-1")),
        ("restore-network", nee.restore_network(NET, [
            nee.restore_vm(NIC, "web-1", vm_data, "cs.example")], "cs.example")),
        ("ensure-network-device", nee.ensure_vpc(VPC)),
        ("implement-vpc", {**nee.V(VPC), **nee.PIP(VPC_SNAT, True)}),
        ("implement-network", nee.implement_network(TIER)),
        ("apply-network-acl", nee.acl(TIER, [
            nee.acl_item(10, "allow", "ingress", "tcp", ports=(443, 443),
                         source=["0.0.0.0/0"]),
            nee.acl_item(20, "deny", "egress", "all")])),
        ("prepare-nic", nee.prepare_nic(TIER, TIER_NIC, "db-1")),
        ("add-dhcp-entry", nee.dhcp_entry(TIER, TIER_NIC, "db-1")),
        ("update-vpc-source-nat-ip", {**nee.V(VPC), **nee.PIP(VPC_SNAT_2, True)}),
        ("custom-action", nee.custom_action(nee.N(NET), "show", {})),
    ]


def teardown_events() -> list[Event]:
    return [
        ("delete-port-forward", nee.port_forward(NET, FORWARD, "tcp", "80", NIC.ip, "8080")),
        ("delete-static-nat", nee.static_nat(NET, STATIC, NIC.ip)),
        ("remove-dns-entry", nee.remove_dns_entry(NET, NIC, "cs.example")),
        ("remove-dhcp-entry", nee.nic_only(NET, NIC)),
        ("release-nic", nee.nic_only(NET, NIC)),
        ("remove-dhcp-subnet", nee.remove_dhcp_subnet(NET)),
        ("remove-dns-subnet", nee.remove_dns_subnet(NET, "cs.example")),
        ("release-ip", nee.public_ip(NET, SNAT, True)),
        ("shutdown-network", nee.N(NET)),
        ("destroy-network", nee.N(TIER)),
        ("shutdown-vpc", nee.V(replace(VPC, state="inactive"))),
        ("destroy-network", nee.N(NET)),
    ]


def registration(token: str) -> dict[str, str]:
    """A registration's details, secrets included, as CloudStack passes them."""
    return {"vxgate.url": "http://127.0.0.1:9", "vxgate.token": token,
            "physicalnetworkname": "guest", "password": "p4ss'<&>", "sshkey": "k"}


def event_file(command: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    return nee.event_of(command, registration(token), {}, payload)


SEED_REQUESTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("PUT", "/v1/zones/1", {"name": "zone1", "asn_range": "65100-65199"}),
    ("PUT", "/v1/physical-networks/200", {"zone_id": "1", "name": "guest",
                                          "l2vni_range": "10000-10999",
                                          "l3vni_range": "50000-50999"}),
    ("PUT", "/v1/devices/sg1", {"zone_id": "1", "role": "softgate", "loopback": "10.255.2.1",
                                "uplinks": [{"interface": "uplink1"}]}),
    ("PUT", "/v1/devices/hv1", {"zone_id": "1", "role": "hypervisor",
                                "loopback": "10.255.1.1", "uplinks": [{"interface": "uplink"}]}),
)


# The devices SEED_REQUESTS declares (sg1, hv1): the agents' view of the fuzzed world.
DEVICES = tuple(path.removeprefix("/v1/devices/") for _, path, _ in SEED_REQUESTS
                if path.startswith("/v1/devices/"))


def rendered_artifacts(client: FlaskClient, token: str) -> dict[str, dict[str, str]]:
    """{device: {artifact: text}} of DEVICES, every artifact rendered now (since=0)."""
    headers = {"Authorization": f"Bearer {token}"}
    artifacts = {}
    for device in DEVICES:
        answer = client.get(f"/v1/devices/{device}/config?since=0", headers=headers)
        assert answer.status_code == 200, (device, answer.get_json())
        artifacts[device] = {name: item["content"]
                             for name, item in answer.get_json()["artifacts"].items()}
    return artifacts


def check_renders(client: FlaskClient, token: str, where: str) -> None:
    """Whatever the accepted fuzz cases stored, every device still renders its configs:
    an answer of 200, frr.conf among its artifacts and no artifact empty."""
    for device, artifacts in rendered_artifacts(client, token).items():
        assert "frr.conf" in artifacts, f"{where}: {device} renders {sorted(artifacts)}"
        empty = sorted(name for name, text in artifacts.items() if not text.strip())
        assert not empty, f"{where}: {device} renders empty {empty}"


def seed(client: FlaskClient, token: str) -> None:
    """Zone 1, its physical network "guest", a SoftGate sg1 and a hypervisor hv1, then
    build_events() through the entry-point: every command must succeed."""
    headers = {"Authorization": f"Bearer {token}"}
    for method, path, body in SEED_REQUESTS:
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 200, (path, response.get_json())
    replay(client, token, build_events())


def replay(client: FlaskClient, token: str, events: list[Event]) -> None:
    for command, payload in events:
        body = json.dumps(event_file(command, token, payload))
        response = client.post(f"/v1/cloudstack/{command}", data=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert response.status_code == 200, (command, response.get_json())
