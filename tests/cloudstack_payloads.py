"""The extension's tests' side of CloudStack: a registration with secrets in it, the
envelope builders taking it, NEE's element with an asserting `ok`, a fake service, and
the service's recorded state. The payload builders themselves are
simulator/cloudstack/element.py's, re-exported here: the tests and the simulator's
CloudStack stand-in send exactly the same payloads.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.service import Service
from simulator.cloudstack import element
from simulator.cloudstack.element import *  # noqa: F403  (the builders, re-exported)
from simulator.cloudstack.element import Element, Json, Net, Vpc

PHYSNET, PHYSNET_NAME = "200", "guest"
ZONE = element.ZONE


@dataclass(frozen=True)
class Registration:
    """registerExtension details; CloudStack passes them all, hidden ones included."""

    url: str
    token: str
    password: str = "R3g-p4ss=w0rd&<x>'"
    sshkey: str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END-----"
    network_mode: str = ""  # "routed": the registration of the `<name>-routed` extension

    @classmethod
    def of(cls, service: Service) -> Registration:
        return cls(f"http://{service.host}:{service.port}", service.token)

    def details(self) -> dict[str, str]:
        details = {"vxgate.url": self.url, "vxgate.token": self.token, "hosts": "192.0.2.10",
                   "username": "cloud", "password": self.password, "sshkey": self.sshkey,
                   "physicalnetworkname": PHYSNET_NAME}
        if self.network_mode:
            details["vxgate.network_mode"] = self.network_mode
        return details


def envelope(registration: Registration, details: Json, payload: Json) -> Json:
    return element.envelope(registration.details(), details, payload)


def event_of(command: str, registration: Registration, details: Json, payload: Json) -> Json:
    return element.event_of(command, registration.details(), details, payload)


def run_legacy(command: str, flags: Sequence[tuple[str, str]], registration: Registration,
               details: Json, file: tuple[str, object] | None = None) -> tuple[int, str]:
    return element.run_legacy(command, flags, registration.details(), details, file)


class CloudStack(Element):
    """NEE's element for the tests: `ok` asserts that the command succeeded."""

    def __init__(self, registration: Registration) -> None:
        super().__init__(registration.details())
        self.registration = registration

    def ok(self, command: str, payload: Json, on: Net | Vpc, *, ensure: bool | None = None
           ) -> str:
        spawn = self.run(command, payload, on, ensure=ensure)
        assert spawn.code == 0, f"{command} exited {spawn.code}: {spawn.output}"
        return spawn.output


@contextmanager
def fake_service(answer: bytes | None) -> Iterator[tuple[str, list[bytes]]]:
    """(URL, requests received) of a listener on 127.0.0.1 that sends `answer` to every
    request; None: it takes the connection and never answers."""
    requests: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5.0)
                data = conn.recv(1 << 20)
                head = data.partition(b"\r\n\r\n")[0].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                while len(data.partition(b"\r\n\r\n")[2]) < length:
                    data += conn.recv(1 << 20)
                requests.append(data)
                if answer is None:
                    stop.wait()
                else:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        stop.set()
        thread.join(10)
        listener.close()


# --- the service side: seeding and the recorded state ----------------------------------


def seed(service: Service) -> None:
    """Zone 1 and its VXLAN physical network, named as CloudStack's physicalnetworkname."""
    service.ok("PUT", f"/v1/zones/{ZONE}", {"name": "zone1"})
    service.ok("PUT", f"/v1/physical-networks/{PHYSNET}", {
        "zone_id": ZONE, "name": PHYSNET_NAME, "l2vni_range": "10000-10999",
        "l3vni_range": "50000-50999"})


# A SoftGate and a hypervisor of zone 1: devices whose rendered configs a command changes.
REPLAY_DEVICES = {
    "sg-replay": {"zone_id": ZONE, "role": "softgate", "loopback": "10.255.2.90",
                  "uplinks": [{"interface": "uplink"}]},
    "hv-replay": {"zone_id": ZONE, "role": "hypervisor", "loopback": "10.255.1.90",
                  "uplinks": [{"interface": "uplink"}]},
}


def rendered_configs(service: Service) -> dict[str, dict[str, tuple[int, str]]]:
    """(generation, text) of every artifact of REPLAY_DEVICES, declared if need be (PUTs);
    reading renders them, so a change shows as new text under a new generation."""
    configs = {}
    for name, body in REPLAY_DEVICES.items():
        service.ok("PUT", f"/v1/devices/{name}", body)
        artifacts = service.ok("GET", f"/v1/devices/{name}/config?since=0")["artifacts"]
        configs[name] = {artifact: (answer["generation"], answer["content"])
                         for artifact, answer in artifacts.items()}
    return configs


def state_about(service: Service, on: Net | Vpc) -> tuple[Json, Any]:
    """recorded_state() of a network (with its VPC) or a VPC, and the part about `on`."""
    net = on if isinstance(on, Net) else None
    vpc = on if isinstance(on, Vpc) else (net.vpc if net else None)
    state = recorded_state(service, [net.id] if net else [], [vpc.id] if vpc else [])
    return state, state[f"network {on.id}" if net else f"vpc {on.id}"]


def recorded_state(service: Service, networks: Sequence[str] = (),
                   vpcs: Sequence[str] = ()) -> Json:
    """Everything the REST API shows about these networks and VPCs, and the pools."""

    def get(path: str) -> Any:
        status, body = service.call("GET", path)
        return body if status == 200 else status

    def ips(query: str) -> list[Json]:
        found = get(f"/v1/zones/{ZONE}/public-ips?{query}")
        return [{**ip, "port_forwards": get(f"/v1/zones/{ZONE}/public-ips/{ip['address']}"
                                             "/port-forwards")} for ip in found]

    state: Json = {"pools": get(f"/v1/physical-networks/{PHYSNET}")["pools"]}
    for vpc_id in vpcs:
        state[f"vpc {vpc_id}"] = {"vpc": get(f"/v1/vpcs/{vpc_id}"),
                                  "public_ips": ips(f"vpc_id={vpc_id}")}
    for net_id in networks:
        base = f"/v1/networks/{net_id}"
        network = get(base)
        state[f"network {net_id}"] = network if network == 404 else {
            "network": network, "public_ips": ips(f"network_id={net_id}"),
            **{part: get(f"{base}/{part}") for part in ("firewall", "acl", "load-balancers",
                                                         "dhcp")},
            "nics": [get(f"{base}/nics/{nic['mac']}") for nic in get(f"{base}/nics")],
        }
    return state
