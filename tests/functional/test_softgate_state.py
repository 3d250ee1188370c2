"""softgate.json as the service compiles it, on SQLite and PostgreSQL.

The state is declared through the API (tests/golden/softgate_cases.py); the compiled
document must parse with the agent's own parsers without a single problem, match its
golden byte for byte on both databases, and be the same text every time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert

from agent.dhcp_state import DhcpState, parse_state
from agent.netfilter_compile import compile_domain
from agent.netfilter_state import RoutingDomain
from provider_service.db import Database
from provider_service.models import Device
from provider_service.models.vms import NetworkServices, Nic, NicVmData
from provider_service.softgate_state import compile_softgate_state, render_softgate_state
from tests.conftest import Api
from tests.golden.frr_cases import ZONE, _device, _network
from tests.golden.softgate_cases import CASES, public_ip, softgate, vm
from tests.golden.support import check_golden

GOLDEN_DIR = Path(__file__).parents[1] / "golden" / "softgate"


def request_of(api: Api) -> Any:
    return lambda method, path, body: api.ok(method, path, body)


def compiled(app: Flask, device: str = "sg1") -> dict[str, Any]:
    database: Database = app.extensions["vxgate.db"]
    with database.read() as session:
        row = session.get(Device, device)
        assert row is not None
        return compile_softgate_state(session, row)


def check_agent_accepts(state: dict[str, Any]) -> None:
    assert state["format"] == 1
    for domain in state["netfilter"]["domains"]:
        RoutingDomain.from_json(domain)
    DhcpState.from_json(state["dhcp"])
    _, problems = parse_state(state["dhcp"])
    assert problems == ()
    netns = [domain["netns"] for domain in state["links"]["domains"]]
    assert netns == sorted(netns) == [d["id"] for d in state["netfilter"]["domains"]]
    assert {n["netns"] for n in state["dhcp"]["networks"]} <= set(netns)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_state_matches_golden_and_parses(api: Api, app: Flask, case: str) -> None:
    device = CASES[case](request_of(api))
    state = compiled(app, device)
    check_agent_accepts(state)
    text = render_softgate_state(state)
    check_golden(GOLDEN_DIR / f"{case}.json", text)
    assert render_softgate_state(compiled(app, device)) == text  # deterministic


def test_a_pair_syncs_each_evpn_domain_between_its_two_sync_addresses(
        api: Api, app: Flask) -> None:
    request = request_of(api)
    CASES["vpcs"](request)
    assert {d["sync"] is None for d in compiled(app, "sg1")["links"]["domains"]} == {True}
    _device(request, "sg2", "softgate", "10.255.2.2", ("uplink1",))
    for name, address, peer in (("sg1", ".1", ".2"), ("sg2", ".2", ".1")):
        state = compiled(app, name)
        check_agent_accepts(state)
        syncs = [d["sync"] for d in state["links"]["domains"]]
        assert len(syncs) > 1 and {(s["address"], s["peer"]) for s in syncs} == {
            (f"169.254.252{address}", f"169.254.252{peer}")}
    _device(request, "sg3", "softgate", "10.255.2.3", ("uplink1",))
    assert {d["sync"] is None for d in compiled(app, "sg1")["links"]["domains"]} == {True}


def test_isolated_network_in_each_section(api: Api, app: Flask) -> None:
    state = compiled(app, CASES["isolated"](request_of(api)))
    (link,) = state["links"]["domains"]
    assert link["routes"] == [f"203.0.113.{n}/32" for n in (10, 11, 12, 13)]
    assert link["routes6"] == ["2001:db8:100::/64"]
    assert state["links"]["blackholes"] == ["203.0.113.0/24"]
    domain = RoutingDomain.from_json(state["netfilter"]["domains"][0])
    assert (domain.kind, str(domain.source_nat_ip)) == ("isolated", "203.0.113.10")
    assert [rule.id for rule in domain.firewall_rules] == ["61", "62", "63", "64"]
    assert [str(net) for net in domain.firewall_rules[0].sources] == ["198.51.100.0/24"]
    (balancer,) = domain.load_balancers
    assert [(str(b.ip), b.port) for b in balancer.backends] == [("10.100.0.11", 8080),
                                                                ("10.100.0.12", 8080)]
    (network,) = DhcpState.from_json(state["dhcp"]).networks
    assert (network.dhcp, network.dns, network.userdata) == (True, True, True)
    first, second = network.nics
    assert (first.vm_data.password, second.vm_data.password) == ("Pa55-w0rd", None)
    assert dict(first.vm_data.metadata)["local-hostname"] == "web-1"
    assert str(first.ipv6) == "2001:db8:100::b"


def test_vpc_tiers_and_their_acls(api: Api, app: Flask) -> None:
    state = compiled(app, CASES["vpcs"](request_of(api)))
    domains = [RoutingDomain.from_json(domain) for domain in state["netfilter"]["domains"]]
    assert [d.kind for d in domains] == ["vpc", "vpc"]
    assert [str(d.source_nat_ip) for d in domains] == ["203.0.113.20", "203.0.113.21"]
    acls = {network.id: network.acl for d in domains for network in d.networks}
    assert acls["vpc2-db"] == ()  # no items: terminal deny
    assert [item.number for item in acls["vpc1-web"] or ()] == [10, 20, 30, 40]
    assert (acls["vpc1-web"] or ())[2].match.protocol == 47
    links = state["links"]["domains"]
    assert all(link["l3vni"] is not None for link in links)
    assert [len(link["segments"]) for link in links] == [2, 2]


def test_routed_domain_has_no_nat(api: Api, app: Flask) -> None:
    state = compiled(app, CASES["routed"](request_of(api)))
    domain = RoutingDomain.from_json(state["netfilter"]["domains"][0])
    assert domain.mode == "routed"
    assert (domain.source_nat_ip, domain.static_nats) == (None, ())
    assert state["links"]["domains"][0]["routes"] == ["198.18.10.0/24", "203.0.113.30/32"]


def test_routed_ingress_rules_open_exactly_their_guest_addresses(api: Api, app: Flask
                                                                  ) -> None:
    state = compiled(app, CASES["routed"](request_of(api)))
    domain = RoutingDomain.from_json(state["netfilter"]["domains"][0])
    fw = compile_domain(domain)[0]  # what the agent loads into inet vxgate_fw
    # The uplink is guarded: a new connection in passes only the allow-lists below.
    assert fw.elements["guarded_ifs"] == {'"vxpub"': None}
    assert fw.elements["in_l4"] == {"198.18.10.10 . tcp . 192.0.2.0/24 . 22": None}
    assert fw.elements["in_icmp"] == {"198.18.10.0/24 . 0.0.0.0/0 . 8 . 0": None}
    assert fw.elements["in_any"] == {}


def test_routed_ingress_rules_follow_the_network_mode(api: Api, app: Flask) -> None:
    """Rules written for the other mode (the network's mode changed since) are left out,
    as are destinations outside the network; a supernet means the whole network."""
    request = request_of(api)
    device = CASES["routed"](request)
    request("PUT", "/v1/networks/routed1/firewall", {"default_egress_allow": True, "rules": [
        {"id": 1, "type": "ingress", "protocol": "all", "publicIp": "",
         "destCidrs": ["0.0.0.0/0", "198.18.10.128/25"]},
        {"id": 2, "type": "ingress", "protocol": "all", "destCidrs": ["2001:db8::/64"]}]})
    _network(request, "net1", "10.100.0.0/24")
    public_ip(request, "203.0.113.10", network_id="net1")
    request("PUT", "/v1/networks/net1/firewall", {"default_egress_allow": True, "rules": [
        {"id": 3, "type": "ingress", "protocol": "all", "publicIp": "203.0.113.10"}]})

    def rules() -> dict[str, list[tuple[str, Any, Any]]]:
        state = compiled(app, device)
        check_agent_accepts(state)
        return {d["mode"]: [(r["id"], r.get("public_ip"), r.get("dest_cidrs"))
                            for r in d["firewall_rules"]]
                for d in state["netfilter"]["domains"]}

    assert rules() == {"routed": [("1", None, ["198.18.10.0/24"])],
                       "natted": [("3", "203.0.113.10", None)]}
    # The modes swap: each rule now fits the other mode and opens nothing.
    _network(request, "routed1", "198.18.10.0/24", mode="natted")
    _network(request, "net1", "10.100.0.0/24", mode="routed")
    assert rules() == {"natted": [], "routed": []}


def test_vlan_handoff_has_no_vxlan(api: Api, app: Flask) -> None:
    state = compiled(app, CASES["vlan_handoff"](request_of(api)))
    links = state["links"]["domains"]
    assert [link["l3vni"] for link in links] == [None, None]
    segments = [segment for link in links for segment in link["segments"]]
    assert all(s["vni"] is None and s["vxlan"] is None and s["bridge"] == f"vxl{s['vlan']}"
               for s in segments)


def test_a_tombstoned_tier_disappears(api: Api, app: Flask) -> None:
    request = request_of(api)
    device = CASES["vpcs"](request)
    before = compiled(app, device)
    event = {"payload": {"network_id": "vpc1-web", "zone_id": ZONE, "vpc_id": "vpc1",
                         "network_state": "allocated"}}
    api.ok("POST", "/v1/cloudstack/destroy-network", event)
    assert api.ok("GET", "/v1/networks/vpc1-web")["state"] == "destroyed"
    after = compiled(app, device)
    check_agent_accepts(after)
    text = render_softgate_state(after)
    assert "vpc1-web" in render_softgate_state(before) and "vpc1-web" not in text
    # Its static NAT and load balancer went with it; the VPC and its other tier stay.
    vpc1 = after["netfilter"]["domains"][0]
    assert [n["id"] for n in vpc1["networks"]] == ["vpc1-db"]
    assert (vpc1["static_nats"], vpc1["load_balancers"]) == ([], [])
    assert vpc1["source_nat_ip"] == "203.0.113.20"
    assert [len(link["segments"]) for link in after["links"]["domains"]] == [1, 2]
    assert "10.1.1.10" in text  # vpc2-web's VM, same address, other VPC


def test_odd_but_valid_state_still_parses(api: Api, app: Flask) -> None:
    """What the API accepts but the agent would refuse is left out item by item."""
    request = request_of(api)
    CASES["vpcs"](request)
    # An id the agent's netfilter parser refuses ('_'), IPv6 and too many DNS servers.
    request("PUT", "/v1/networks/net_1", {"zone_id": ZONE, "physical_network_id": "200",
                                          "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"})
    # Two static NATs to one guest address, two NICs with one host name (one without a
    # DNS entry), metadata the agent reserves or folds together.
    for address in ("203.0.113.40", "203.0.113.41"):
        public_ip(request, address, network_id="net_1")
        request("PUT", f"/v1/zones/{ZONE}/public-ips/{address}/static-nat",
                {"network_id": "net_1", "private_ip": "10.9.0.10"})
    vm(request, "net_1", "02:00:0a:09:00:0a", "10.9.0.10", "twin")
    request("PUT", "/v1/networks/net_1/nics/02:00:0a:09:00:0b/dhcp",
            {"ip": "10.9.0.11", "hostname": "Twin"})
    request("PUT", "/v1/networks/net_1/nics/02:00:0a:09:00:0b/vm-data", {"vm_data": [
        {"dir": "metadata", "file": "user-data", "content": "shadow"},
        {"dir": "metadata", "file": "Vm-Id", "content": "1"},
        {"dir": "metadata", "file": "vm-id", "content": "2"}]})
    # (A password over 256 characters is refused by the API: tests/functional/
    # test_injection.py.)
    request("PUT", "/v1/networks/net_1/dns", {
        "dns": "192.0.2.1,2001:db8::53,192.0.2.2,192.0.2.3,192.0.2.4,192.0.2.5"})
    state = compiled(app, softgate(request))
    check_agent_accepts(state)
    domain = next(d for d in state["netfilter"]["domains"] if d["kind"] == "isolated")
    assert domain["static_nats"] == [{"public_ip": "203.0.113.40", "private_ip": "10.9.0.10"}]
    (network,) = [n for n in state["dhcp"]["networks"] if n["cidr"] == "10.9.0.0/24"]
    assert network["id"] == domain["networks"][0]["id"] != "net_1"
    assert network["upstream_dns"] == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
    twin, other = network["nics"]
    assert (twin["hostname"], "hostname" in other) == ("twin", False)
    assert other["metadata"] == {"Vm-Id": "1"} and "password" not in other


def test_two_thousand_vms_compile_well_under_a_second(
    api: Api, app: Flask, database_url: str
) -> None:
    """A SoftGate serving 2,000 VMs (user data, metadata, password each) over 20 networks."""
    request = request_of(api)
    CASES["isolated"](request)
    networks = [f"big{index}" for index in range(20)]
    for index, network_id in enumerate(networks):
        request("PUT", f"/v1/networks/{network_id}", {
            "zone_id": ZONE, "physical_network_id": "200", "cidr": f"10.{index}.0.0/21",
            "gateway": f"10.{index}.0.1"})
    _bulk_vms(app, networks, per_network=100)
    started = time.perf_counter()
    state = compiled(app)
    elapsed = time.perf_counter() - started
    text = render_softgate_state(state)
    rendered = time.perf_counter() - started - elapsed
    print(f"\nsoftgate.json for 2,000 VMs on {database_url.split(':')[0]}: compiled in "
          f"{elapsed * 1000:.0f} ms, rendered in {rendered * 1000:.0f} ms, "
          f"{len(text) // 1024} KiB")
    check_agent_accepts(state)
    assert sum(len(n["nics"]) for n in state["dhcp"]["networks"]) == 2002
    assert elapsed < 1.0


def _bulk_vms(app: Flask, networks: list[str], per_network: int) -> None:
    """NIC rows as the VM-start calls leave them, inserted directly: 2,000 VM starts
    through the API would take minutes."""
    nics, files, services = [], [], []
    for index, network_id in enumerate(networks):
        services.append({"network_id": network_id, "dhcp_enabled": True, "dns_enabled": True,
                         "dns": "192.0.2.53", "domain": "cs.example"})
        for host in range(per_network):
            mac, name = f"02:00:0a:{index:02x}:{host // 256:02x}:{host % 256:02x}", f"vm{host}"
            nics.append({"network_id": network_id, "mac": mac, "ip": f"10.{index}.1.{host}",
                         "hostname": name, "default_nic": True, "dhcp_entry": True,
                         "dns_name": name, "nic_id": "", "nic_uuid": "", "device_id": ""})
            for directory, file, content in (
                    ("userdata", "user_data", "#cloud-config\n" + "x" * 2000),
                    ("metadata", "instance-id", f"i-2-{index}-{host}-VM"),
                    ("metadata", "local-hostname", name),
                    ("metadata", "public-keys", "ssh-ed25519 AAAAC3Nz u@h"),
                    ("password", "vm_password", f"pw-{index}-{host}")):
                files.append({"network_id": network_id, "mac": mac, "dir": directory,
                              "file": file, "content": content})
    database: Database = app.extensions["vxgate.db"]
    database.write(lambda session: [session.execute(insert(model), rows) for model, rows in
                                    ((NetworkServices, services), (Nic, nics),
                                     (NicVmData, files))])
