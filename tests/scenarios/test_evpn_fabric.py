"""A live fabric — spine, two hypervisors, a SoftGate and an upstream router — running
the frr.conf files the service renders (simulator/evpn_fabric.py).

It must converge (every session Established, type-2/3/5 routes present), carry traffic,
announce upstream only what it should, and each node's running config must be exactly
its rendered one: frr-reload.py --test shows an empty diff.
"""

from __future__ import annotations

import pytest

from simulator import evpn_fabric as ef
from simulator.evpn_fabric import SmallFabric

CONVERGENCE_LIMIT_S = 15  # measured ~2 s on 2 cores (bench: python -m bench --only frr)


def test_fabric_converges_on_rendered_configs(small_fabric: SmallFabric) -> None:
    timings = small_fabric.timings
    print(f"convergence: {timings}")
    assert timings["all routes present"] < CONVERGENCE_LIMIT_S, timings
    assert ef.missing_routes(small_fabric) == []


@pytest.mark.parametrize("node", ef.FABRIC_NODES)
def test_running_config_is_the_rendered_config(small_fabric: SmallFabric, node: str) -> None:
    assert small_fabric.fabric.reload_test(node, small_fabric.configs[node]) == []


def test_upstream_learns_only_public_pools_and_routed_cidrs(small_fabric: SmallFabric) -> None:
    routes = small_fabric.fabric.vtysh_json("up1", "show ip bgp json")["routes"]
    learned = {prefix for prefix, paths in routes.items()
               if any(path.get("peerId") == "198.51.100.0" for path in paths)}
    assert learned == {ef.PUBLIC_POOL, ef.ROUTED_CIDR}


def test_the_internet_reaches_public_addresses_over_bgp_learnt_routes(
        small_fabric: SmallFabric) -> None:
    """up1 has no static route: its way to the public pool and the ROUTED CIDR is what sg1
    announced, installed by bgpd in its kernel."""
    fabric = small_fabric.fabric
    assert fabric.vtysh_json("up1", "show ip route static json") == {}
    for cidr in (ef.PUBLIC_POOL, ef.ROUTED_CIDR):
        [route] = fabric.vtysh_json("up1", f"show ip route {cidr} json")[cidr]
        assert (route["protocol"], route.get("installed")) == ("bgp", True), route
        assert "proto bgp" in fabric.ip("up1", "route", "show", cidr), cidr


def test_fabric_carries_loopbacks_only(small_fabric: SmallFabric) -> None:
    """The SoftGate's upstream default route stays out of the underlay."""
    routes = small_fabric.fabric.vtysh_json("spine1", "show ip bgp json")["routes"]
    assert set(routes) == {f"{address}/32" for address in ef.LOOPBACKS.values()}


def test_bfd_runs_on_fabric_and_upstream_sessions(small_fabric: SmallFabric) -> None:
    def peers_up() -> bool:
        peers = small_fabric.fabric.vtysh_json("sg1", "show bfd peers json")
        return len(peers) == 2 and all(peer.get("status") == "up" for peer in peers)

    from simulator.fabric import wait_until

    wait_until("BFD up on sg1's two sessions", peers_up, timeout=15)


def test_vms_reach_each_other_and_the_gateway(small_fabric: SmallFabric) -> None:
    fabric = small_fabric.fabric
    net1 = small_fabric.segments[0]
    for target in ("10.100.0.12", net1.gateway):
        result = fabric.exec("vm1", "ping", "-c1", "-W1", "-q", target, check=False)
        assert result.returncode == 0, f"vm1 -> {target}: {result.stdout}"
    # 1500-byte frames end to end over VXLAN: the underlay MTU leaves room for the header.
    jumbo = fabric.exec("vm1", "ping", "-c1", "-W1", "-M", "do", "-s", "1472", "10.100.0.12",
                        check=False)
    assert jumbo.returncode == 0, jumbo.stdout
