"""A fabric built from a Topology: the operator's part only, ready for tenants.

`running_fabric` declares the zone, the physical network and every device to the provider
service, builds the namespaces (nodes, loopbacks, fabric and WAN links, the internet
host on up1), starts zebra, bgpd and bfdd on every node and the vxgate agent on every
device, loads up1's hand-written config and waits until every BGP session is
Established. Tenants (networks, VPCs, IPs, VMs) are for others to add: through the
service (a CloudStack stand-in, a test) and, for VM namespaces,
`fabric.add_node(vm, router=False)`.

    with running_service_for_agents() as (service, agent_url):
        with running_fabric(Topology(spines=2, leaves=2), service.ok, agent_url) as cloud:
            cloud.fabric.vtysh("hv1", "show ip route")
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.service import Service, running_service
from simulator.fabric import Fabric, FabricError, wait_until
from simulator.local_service import Request
from simulator.topology import UPSTREAM, Topology

CONVERGENCE_TIMEOUT_S = 60.0
# What a convergence check returns: what is still missing, empty once it holds.
Check = Callable[[], Sequence[str]]
SESSIONS_ESTABLISHED = "all sessions established"


@dataclass
class CloudFabric:
    """A running fabric: its namespaces and daemons, the topology it was built from, the
    service it was declared to, and how long its steps took (seconds from daemon start)."""

    fabric: Fabric
    topology: Topology
    request: Request
    agent_service_url: str  # where the agents reach the service from their namespaces
    timings: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0  # time.monotonic() just before the first daemon started

    def since_start(self) -> float:
        return time.monotonic() - self.started_at

    def down(self) -> None:
        self.fabric.down()


# --- declaring ---------------------------------------------------------------------------


def declare_inventory(request: Request, topology: Topology) -> None:
    """PUT the zone, the physical network and every device (idempotent: PUTs)."""
    for path, body in topology.inventory():
        request("PUT", path, body)


# --- building ----------------------------------------------------------------------------


def build_namespaces(fabric: Fabric, topology: Topology) -> None:
    """Every FRR node's namespace with its loopback, every link, the internet host."""
    for node in topology.frr_nodes:
        fabric.add_node(node)
    for node, loopback in topology.loopbacks().items():
        fabric.ip(node, "addr", "add", f"{loopback}/32", "dev", "lo")
    for link in topology.links():
        fabric.veth(link.node, link.interface, link.peer, link.peer_interface, mtu=link.mtu)
        for node, interface, address in ((link.node, link.interface, link.address),
                                         (link.peer, link.peer_interface, link.peer_address)):
            if address:
                fabric.ip(node, "addr", "add", address, "dev", interface)
    fabric.ip(UPSTREAM, "addr", "add", f"{topology.internet_host}/32", "dev", "lo")


def start_routing(fabric: Fabric, topology: Topology) -> None:
    """zebra everywhere first (bgpd and bfdd join its namespaces), then bgpd and bfdd."""
    for node in topology.frr_nodes:
        # A SoftGate's agent makes its routing domains as namespaces: FRR's netns VRF
        # backend (lab FINDINGS §5).
        fabric.start_zebra(node, netns_vrfs=node in topology.softgate_names)
    for node in topology.frr_nodes:
        fabric.start_daemon(node, "bgpd")
        fabric.start_daemon(node, "bfdd")


def start_agents(fabric: Fabric, topology: Topology, request: Request,
                 agent_service_url: str) -> None:
    """A fresh device token and a vxgate agent for every device."""
    for node in topology.fabric_nodes:
        token = request("POST", f"/v1/devices/{node}/token", None)["token"]
        fabric.start_agent(node, agent_service_url, token,
                           softgate=node in topology.softgate_names,
                           vtep_leaf=node in topology.vtep_leaves)


def upstream_config(topology: Topology) -> str:
    """up1's frr.conf: not a vxgate device, so written by hand. It offers each SoftGate a
    default route and takes what the SoftGates announce."""
    peers = [link.address.split("/")[0] for link in topology.wan_links()]
    router_id = topology.upstream_address(topology.softgate_names[0])
    lines = ["frr defaults datacenter", f"hostname {UPSTREAM}", "log syslog informational",
             "!", f"router bgp {topology.upstream_asn}", f" bgp router-id {router_id}",
             " coalesce-time 100"]
    for peer in peers:
        lines += [f" neighbor {peer} remote-as external", f" neighbor {peer} timers 3 9",
                  f" neighbor {peer} timers connect 2", f" neighbor {peer} bfd"]
    lines += [" !", " address-family ipv4 unicast"]
    lines += [f"  neighbor {peer} default-originate" for peer in peers]
    lines += [" exit-address-family", "exit", "!"]
    return "\n".join(lines) + "\n"


def start_fabric(topology: Topology, request: Request, agent_service_url: str, *,
                 prepare: Callable[[CloudFabric], None] | None = None) -> CloudFabric:
    """Declare the inventory, build the namespaces, run `prepare` (tenants and VMs to be
    in place before any daemon starts), then start FRR, the agents and up1's config.
    Does not wait for convergence (`wait_converged`). Tears the fabric down if any step
    fails."""
    declare_inventory(request, topology)
    cloud = CloudFabric(Fabric(), topology, request, agent_service_url)
    try:
        build_namespaces(cloud.fabric, topology)
        if prepare is not None:
            prepare(cloud)
        cloud.started_at = time.monotonic()
        start_routing(cloud.fabric, topology)
        start_agents(cloud.fabric, topology, request, agent_service_url)
        cloud.fabric.load_config(UPSTREAM, upstream_config(topology))
        cloud.timings["daemons started and configured"] = cloud.since_start()
    except BaseException:
        cloud.down()
        raise
    return cloud


# --- convergence -------------------------------------------------------------------------


def session_problems(fabric: Fabric, node: str) -> list[str]:
    """Why a node's BGP sessions are not all up (empty when they are): a family with no
    peers, or a peer in another state than Established."""
    summary = fabric.vtysh_json(node, "show bgp summary json")
    families = [family for family in ("ipv4Unicast", "l2VpnEvpn") if family in summary]
    if not families:
        return [f"{node}: no BGP sessions"]
    problems = []
    for family in families:
        peers = summary[family].get("peers", {})
        if not peers:
            problems.append(f"{node}: no {family} peers")
        problems += [f"{node}: {peer} ({family}) {state.get('state')}"
                     for peer, state in peers.items() if state.get("state") != "Established"]
    return problems


def sessions_established(fabric: Fabric, node: str) -> bool:
    return not session_problems(fabric, node)


def missing_sessions(cloud: CloudFabric) -> list[str]:
    return [problem for node in cloud.topology.frr_nodes
            for problem in session_problems(cloud.fabric, node)]


def wait_converged(cloud: CloudFabric, extra_checks: Mapping[str, Check] | None = None,
                   timeout: float = CONVERGENCE_TIMEOUT_S) -> None:
    """Poll until every session is Established, then until each extra check holds (its
    list of what is missing is empty); record each in `timings`, in seconds from daemon
    start. On a timeout the error names what was still missing."""
    checks: dict[str, Check] = {SESSIONS_ESTABLISHED: lambda: missing_sessions(cloud)}
    checks.update(extra_checks or {})
    for what, check in checks.items():
        wait_until_nothing_missing(what, check, timeout)
        cloud.timings[what] = cloud.since_start()


def wait_until_nothing_missing(what: str, check: Check, timeout: float) -> None:
    missing: Sequence[str] = ()

    def holds() -> bool:
        nonlocal missing
        missing = check()
        return not missing

    try:
        wait_until(what, holds, timeout=timeout)
    except FabricError as error:
        raise FabricError(f"{error}; still missing: {'; '.join(missing)}") from None


@contextmanager
def running_fabric(topology: Topology, request: Request, agent_service_url: str, *,
                   prepare: Callable[[CloudFabric], None] | None = None,
                   extra_checks: Mapping[str, Check] | None = None) -> Iterator[CloudFabric]:
    """A started and converged fabric (`start_fabric`, `wait_converged`); torn down when
    the block ends, also on failure."""
    cloud = start_fabric(topology, request, agent_service_url, prepare=prepare)
    try:
        wait_converged(cloud, extra_checks)
        yield cloud
    finally:
        cloud.down()


@contextmanager
def running_service_for_agents(workers: int = 1) -> Iterator[tuple[Service, str]]:
    """The service under gunicorn, also on a Unix socket: agents in their namespaces
    reach it by path. Yields the service and the agents' URL for it."""
    # A short path: a Unix socket's name is limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="vxsvc") as scratch:
        socket_path = Path(scratch) / "service.sock"
        with running_service(workers=workers, unix_socket=socket_path) as service:
            yield service, f"unix://{socket_path}"
