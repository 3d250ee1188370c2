"""Whole CloudStack call sequences through the real entry-point, against a running service.

(a) an isolated network with two VMs, source NAT, static NAT, a port forward, firewall
rules and a load balancer; (b) a VPC with two tiers and their network ACLs. Each is sent
in CloudStack's order with its call amplification (protocol.md §1, §3, §5: an ensure
before every network command, VPC-level for tiers; implement-network, then assign-ip of
the source-NAT address; per VM prepare-nic, add-dhcp-entry, config-dns-subnet,
add-dns-entry, save-vm-data). The REST API must then show the expected state; replaying
the whole sequence must change nothing; the teardown must leave nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from bench.service import Service
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import CloudStack, Json, Net, Nic, PublicIp, Vpc

DOMAIN = "cs.lab"
USERDATA = "#cloud-config\nwrite_files:\n - {path: /etc/motd, content: 'a=b & <c>'}\n"




def implement(cs: CloudStack, net: Net) -> Net:
    """NEE implement(): its own ensure, then implement-network (with the ensure every
    command gets); CloudStack stores the broadcast URI we answer."""
    cs.ensure(net)
    answer = json.loads(cs.ok("implement-network", cp.implement_network(net), net))
    assert answer["network.broadcast_domain_type"] == "Vxlan"
    return replace(net, vlan=answer["network.broadcast_uri"].removeprefix("vxlan://"),
                   state="implemented")


def nic(net: Net, k: int) -> Nic:
    return Nic(f"{net.id}{k}", f"02:00:0a:{int(net.id) % 256:02x}:00:{k + 10:02x}",
               f"{net.cidr.rsplit('.', 1)[0]}.{k + 10}", net.gateway, uuid=f"nic-{net.id}-{k}")


def start_vm(cs: CloudStack, net: Net, k: int) -> Nic:
    """The calls of one VM start: each with its ensure, ~10 spawns."""
    vm, host = nic(net, k), f"vm-{net.id}-{k}"
    cs.ok("prepare-nic", cp.prepare_nic(net, vm, host), net)
    cs.ok("add-dhcp-entry", cp.dhcp_entry(net, vm, host, DOMAIN), net)
    cs.ok("config-dns-subnet", cp.config_subnet(net, vm, DOMAIN), net)
    cs.ok("add-dns-entry", cp.dns_entry(net, vm, host, DOMAIN), net)
    data = cp.vm_data(vm, host, int(vm.nic_id), userdata=USERDATA, password=f"Pw={k}<&>",
                      public_key="ssh-ed25519 AAAAC3Nza+/= ops@example")
    cs.ok("save-vm-data", cp.save_vm_data(net, vm, data), net)
    return vm


def stop_vm(cs: CloudStack, net: Net, vm: Nic) -> None:
    cs.ok("remove-dhcp-entry", cp.nic_only(net, vm), net)
    cs.ok("remove-dns-entry", cp.remove_dns_entry(net, vm, DOMAIN), net)
    cs.ok("release-nic", cp.nic_only(net, vm), net)


def gone(service: Service, state: Json) -> None:
    assert all(value == {"vpc": 404, "public_ips": []} or value == 404
               for key, value in state.items() if key != "pools"), state
    assert service.ok("GET", f"/v1/zones/{cp.ZONE}/public-ips") == []
    pools = state["pools"]
    assert pools["l2vni"]["used"] == pools["l3vni"]["used"] == 0, pools


# --- (a) isolated network ---------------------------------------------------------------

NET = Net("300", "10.30.0.0/24", "10.30.0.1", state="implementing")
SNAT, STATIC = PublicIp("203.0.113.200"), PublicIp("203.0.113.201")
FORWARD, BALANCER = PublicIp("203.0.113.202"), PublicIp("203.0.113.203")


def firewall(net: Net, count: int) -> Json:
    """The network's first `count` firewall rules: NEE sends all of them every time."""
    rules = [cp.fw_rule(61, "ingress", "tcp", ports=(22, 22), public_ip=STATIC.address,
                        source=["198.51.100.0/24"]),
             cp.fw_rule(62, "ingress", "tcp", ports=(2222, 2222), public_ip=FORWARD.address,
                        source=["0.0.0.0/0"]),
             cp.fw_rule(63, "ingress", "tcp", ports=(80, 80), public_ip=BALANCER.address,
                        source=["0.0.0.0/0"]),
             cp.fw_rule(64, "egress", "udp", ports=(53, 53), source=[net.cidr],
                        dest=["192.0.2.53/32"])]
    return cp.fw_rules(net, rules[:count])


def balancer(web: list[Nic], *, revoke: bool = False) -> Json:
    return cp.lb_rule(71, "web", BALANCER, 80, 8080, [(vm.ip, 8080, False) for vm in web],
                      algorithm="leastconn", revoke=revoke)


def isolated_sequence(cs: CloudStack) -> tuple[Net, list[Nic]]:
    net = implement(cs, NET)
    cs.ok("assign-ip", cp.public_ip(net, SNAT, True), net)
    web = [start_vm(cs, net, k) for k in range(2)]
    cs.ok("assign-ip", cp.public_ip(net, STATIC, False), net)
    cs.ok("add-static-nat", cp.static_nat(net, STATIC, web[0].ip), net)
    cs.ok("apply-fw-rules", firewall(net, 1), net)
    cs.ok("assign-ip", cp.public_ip(net, FORWARD, False), net)
    cs.ok("add-port-forward", cp.port_forward(net, FORWARD, "tcp", "2222", web[1].ip, "22"), net)
    cs.ok("apply-fw-rules", firewall(net, 2), net)
    cs.ok("assign-ip", cp.public_ip(net, BALANCER, False), net)
    cs.ok("apply-lb-rules", cp.lb(net, [balancer(web)]), net)
    cs.ok("apply-fw-rules", firewall(net, 4), net)
    return net, web


def check_isolated(state: Json, net: Net, web: list[Nic]) -> None:
    network = state[f"network {net.id}"]
    assert network["network"]["broadcast_uri"] == f"vxlan://{net.vlan}"
    assert network["network"]["state"] == "implemented"
    ips = {ip["address"]: ip for ip in network["public_ips"]}
    assert {a: ip["source_nat"] for a, ip in ips.items()} == {
        SNAT.address: True, STATIC.address: False, FORWARD.address: False,
        BALANCER.address: False}
    assert ips[STATIC.address]["static_nat"] == {"public_ip": STATIC.address,
                                                 "network_id": net.id, "private_ip": web[0].ip}
    assert [(f["public_ports"], f["private_ip"], f["private_ports"])
            for f in ips[FORWARD.address]["port_forwards"]] == [("2222", web[1].ip, "22")]
    assert [(r["id"], r["publicIp"]) for r in network["firewall"]["rules"]] == [
        (61, STATIC.address), (62, FORWARD.address), (63, BALANCER.address), (64, None)]
    [rule] = network["load-balancers"]["rules"]
    assert (rule["publicIp"], rule["algorithm"], rule["backends"]) == (
        BALANCER.address, "leastconn", [{"ip": vm.ip, "port": 8080} for vm in web])
    assert network["dhcp"] == {"network_id": net.id, "dhcp_enabled": True, "dns_enabled": True,
                               "dns": list(cp.DNS_SERVERS), "domain": DOMAIN}
    for stored, vm in zip(network["nics"], web, strict=True):
        assert (stored["mac"], stored["ip"], stored["dhcp_entry"], stored["dns_entry"],
                stored["has_password"]) == (vm.mac, vm.ip, True, True, True)
        files = {f"{i['dir']}/{i['file']}": i["content"] for i in stored["vm_data"]}
        assert files["userdata/user_data"] == USERDATA
        assert files["metadata/local-ipv4"] == vm.ip


def isolated_teardown(cs: CloudStack, net: Net, web: list[Nic]) -> None:
    for vm in web:
        stop_vm(cs, net, vm)
    cs.ok("apply-lb-rules", cp.lb(net, [balancer(web, revoke=True)]), net)
    cs.ok("delete-port-forward", cp.port_forward(net, FORWARD, "tcp", "2222", web[1].ip, "22"),
          net)
    cs.ok("delete-static-nat", cp.static_nat(net, STATIC, web[0].ip), net)
    cs.ok("apply-fw-rules", firewall(net, 0), net)
    for ip in (STATIC, FORWARD, BALANCER, SNAT):
        cs.ok("release-ip", cp.public_ip(net, ip, ip is SNAT), net)
    cs.ok("shutdown-network", cp.N(replace(net, state="shutdown")), net)
    cs.ok("destroy-network", cp.N(replace(net, state="allocated")), net)


def test_isolated_network_sequence_replay_and_teardown(service: Service, cs: CloudStack
                                                       ) -> None:
    net, web = isolated_sequence(cs)
    state = cp.recorded_state(service, [net.id])
    check_isolated(state, net, web)
    assert state["pools"]["l2vni"]["used"] == state["pools"]["l3vni"]["used"] == 1
    spawns = len(cs.spawns)

    assert isolated_sequence(cs) == (net, web)
    assert len(cs.spawns) == 2 * spawns  # the same calls again, each with its ensure
    assert cp.recorded_state(service, [net.id]) == state

    isolated_teardown(cs, net, web)
    gone(service, cp.recorded_state(service, [net.id]))
    assert "network:300" not in cs.stored  # CloudStack drops the details on destroy


# --- (b) VPC with two tiers --------------------------------------------------------------

VPC = Vpc("400", "10.40.0.0/16")
VPC_SNAT = PublicIp("198.51.100.40", gateway="198.51.100.1", vlan="vlan://102")
TIERS = (Net("401", "10.40.1.0/24", "10.40.1.1", vpc=VPC, state="implementing"),
         Net("402", "10.40.2.0/24", "10.40.2.1", vpc=VPC, state="implementing"))
ACLS: dict[str, list[Json]] = {
    "401": [cp.acl_item(1, "allow", "ingress", "tcp", ports=(443, 443), source=["0.0.0.0/0"]),
            cp.acl_item(2, "allow", "ingress", "icmp", icmp=(-1, -1), source=["10.40.0.0/16"]),
            cp.acl_item(3, "deny", "egress", "all", source=["0.0.0.0/0"])],
    "402": [cp.acl_item(10, "allow", "ingress", "tcp", ports=(5432, 5432),
                        source=["10.40.1.0/24"]),
            cp.acl_item(20, "deny", "ingress", "all", source=["0.0.0.0/0"])],
}


def vpc_sequence(cs: CloudStack) -> tuple[list[Net], Nic]:
    cs.ensure(VPC)  # implementVpc: the explicit VPC ensure, then implement-vpc
    cs.ok("implement-vpc", {**cp.V(VPC), **cp.PIP(VPC_SNAT, True)}, VPC)
    tiers = []
    for tier in TIERS:
        tier = implement(cs, tier)
        cs.ok("assign-ip", cp.public_ip(tier, VPC_SNAT, True), tier)  # the VPC's SNAT IP
        cs.ok("apply-network-acl", cp.acl(tier, ACLS[tier.id]), tier)
        tiers.append(tier)
    return tiers, start_vm(cs, tiers[0], 0)


def check_vpc(state: Json, tiers: list[Net], vm: Nic) -> None:
    vpc = state[f"vpc {VPC.id}"]
    assert (vpc["vpc"]["cidr"], vpc["vpc"]["physical_network_id"]) == (VPC.cidr, cp.PHYSNET)
    assert [(ip["address"], ip["vpc_id"], ip["network_id"], ip["source_nat"])
            for ip in vpc["public_ips"]] == [(VPC_SNAT.address, VPC.id, None, True)]
    networks = [state[f"network {tier.id}"] for tier in tiers]
    assert [n["network"]["vpc_id"] for n in networks] == [VPC.id, VPC.id]
    assert {n["network"]["l3vni"] for n in networks} == {vpc["vpc"]["l3vni"]}
    assert [n["network"]["broadcast_uri"] for n in networks] == [
        f"vxlan://{tier.vlan}" for tier in tiers]
    assert len({tier.vlan for tier in tiers}) == 2
    for tier, network in zip(tiers, networks, strict=True):
        assert network["public_ips"] == []  # the SNAT address is the VPC's, not a tier's
        assert [_acl_key(item) for item in network["acl"]["rules"]] == [
            _acl_key(item) for item in ACLS[tier.id]]
    assert [(n["mac"], n["dhcp_entry"], n["dns_entry"]) for n in networks[0]["nics"]] == [
        (vm.mac, True, True)]


def _acl_key(item: Json) -> tuple[Any, ...]:
    return (item["number"], item["action"], item["trafficType"], item["protocol"],
            item.get("portStart"), item.get("icmpType"), item["sourceCidrs"])


def test_vpc_sequence_replay_and_teardown(service: Service, cs: CloudStack) -> None:
    tiers, vm = vpc_sequence(cs)
    ids = [tier.id for tier in tiers]
    state = cp.recorded_state(service, ids, [VPC.id])
    check_vpc(state, tiers, vm)
    assert (state["pools"]["l2vni"]["used"], state["pools"]["l3vni"]["used"]) == (2, 1)
    assert json.loads(cs.stored[f"vpc:{VPC.id}"])["l3vni"] == state[f"vpc {VPC.id}"]["vpc"][
        "l3vni"]

    shown = json.loads(cs.ok("custom-action", cp.custom_action(cp.V(VPC), "show", {}), VPC))
    assert shown == {"status": "success", "message": state[f"vpc {VPC.id}"]["vpc"]}

    assert vpc_sequence(cs) == (tiers, vm)
    assert cp.recorded_state(service, ids, [VPC.id]) == state

    # restartVPC with cleanup (network.rolling.restart=false): destroy-network per tier and
    # shutdown-vpc with the VPC still Enabled, then implement-vpc; no implement-network
    # follows, and the VMs keep running on the tiers' VNIs. Nothing may be released.
    for tier in tiers:
        cs.ok("destroy-network", cp.N(tier), tier)
    cs.ok("shutdown-vpc", cp.V(VPC), VPC)
    cs.ensure(VPC)
    cs.ok("implement-vpc", {**cp.V(VPC), **cp.PIP(VPC_SNAT, True)}, VPC)
    after = cp.recorded_state(service, ids, [VPC.id])
    assert after["pools"] == state["pools"]
    assert [after[f"network {t.id}"]["network"]["broadcast_uri"] for t in tiers] == [
        state[f"network {t.id}"]["network"]["broadcast_uri"] for t in tiers]
    assert after[f"vpc {VPC.id}"]["vpc"]["l3vni"] == state[f"vpc {VPC.id}"]["vpc"]["l3vni"]

    # deleteVPC: every tier deleted first (destroy-network arrives with state allocated),
    # then the VPC is marked Inactive and shutdown-vpc ends it.
    for tier in tiers:
        cs.ok("destroy-network", cp.N(replace(tier, state="allocated")), tier)
    cs.ok("shutdown-vpc", cp.V(replace(VPC, state="Inactive")), VPC)
    gone(service, cp.recorded_state(service, ids, [VPC.id]))
    assert cs.stored == {}


# --- the legacy flag form (protocol.md §9) ----------------------------------------------

# The flags each command had before the merge, in NEE @7b616e4e's order (payload key →
# --key-with-dashes); rule and VM-data lists travel in base64 temp files instead.
LEGACY_FLAGS = {
    "ensure-network-device": ("network_id", "vlan", "zone_id", "current_details"),
    "implement-network": ("network_id", "vlan", "gateway", "cidr", "extension_ip"),
    "assign-ip": ("network_id", "vlan", "public_ip", "source_nat", "gateway", "cidr",
                  "public_gateway", "public_cidr", "public_vlan"),
    "add-port-forward": ("network_id", "vlan", "public_ip", "public_cidr", "public_vlan",
                         "public_port", "private_ip", "private_port", "protocol"),
    "apply-fw-rules": ("network_id", "vlan"),
    "add-dhcp-entry": ("network_id", "mac", "ip", "hostname", "gateway", "cidr", "dns",
                       "default_nic", "domain", "extension_ip"),
    "save-vm-data": ("network_id", "ip", "gateway", "extension_ip"),
}
LEGACY_FILES = {"apply-fw-rules": ("--fw-rules-file", "fw_rules"),
                "save-vm-data": ("--vm-data-file", "vm_data")}


def legacy_calls(net: Net, vm: Nic, ip: PublicIp) -> list[tuple[str, Json]]:
    """A network with a port forward, its firewall rule and a VM with its data."""
    rule = cp.fw_rule(51, "ingress", "tcp", ports=(2222, 2222), public_ip=ip.address,
                      source=["192.0.2.0/24"])
    data = cp.vm_data(vm, "db-0", 94, userdata=USERDATA, password="Pw=94")
    return [("assign-ip", cp.public_ip(net, ip, False)),
            ("add-port-forward", cp.port_forward(net, ip, "tcp", "2222", vm.ip, "22")),
            ("apply-fw-rules", cp.fw_rules(net, [rule])),
            ("add-dhcp-entry", cp.dhcp_entry(net, vm, "db-0", DOMAIN)),
            ("save-vm-data", cp.save_vm_data(net, vm, data))]


def run_legacy(cs: CloudStack, details: Json, command: str, payload: Json) -> str:
    flags = [(f"--{key.replace('_', '-')}", str(payload.get(key, "")))
             for key in LEGACY_FLAGS[command]]
    file = None
    if command in LEGACY_FILES:
        flag, key = LEGACY_FILES[command]
        file = (flag, cp.base64_contents(payload[key]) if key == "vm_data" else payload[key])
    code, output = cp.run_legacy(command, flags, cs.registration, details, file)
    assert code == 0, f"{command}: {output}"
    return output


def test_legacy_flag_form_records_what_the_payload_file_form_does(service: Service,
                                                                  cs: CloudStack) -> None:
    net = Net("94", "10.94.0.0/24", "10.94.0.1")
    vm, ip = nic(net, 0), PublicIp("198.51.100.94", gateway="198.51.100.1")
    details = json.loads(run_legacy(cs, {}, "ensure-network-device", cp.ensure_network(net)))
    uri = json.loads(run_legacy(cs, details, "implement-network", cp.implement_network(net)))[
        "network.broadcast_uri"]
    up = replace(net, vlan=uri.removeprefix("vxlan://"))
    for command, payload in legacy_calls(up, vm, ip):
        run_legacy(cs, details, command, payload)
    by_legacy = cp.recorded_state(service, [net.id])
    assert by_legacy["network 94"]["nics"][0]["has_password"] is True

    # The same events from payload files change nothing, but the NIC ids the flags lack.
    implement(cs, net)
    for command, payload in legacy_calls(up, vm, ip):
        cs.ok(command, payload, up)
    assert _without_nic_ids(cp.recorded_state(service, [net.id])) == _without_nic_ids(by_legacy)


def _without_nic_ids(state: Json) -> Json:
    network = state["network 94"]
    nics = [{k: v for k, v in nic.items() if k not in ("nic_id", "nic_uuid", "device_id")}
            for nic in network["nics"]]
    return {**state, "network 94": {**network, "nics": nics}}
