"""An isolated network driven through the CloudStack stand-in with the real `cs` client:
every change is a CloudStack API call, every packet crosses the real fabric. The same
checks run on a VLAN hand-off site (test_cloud_vlan.py imports them).

The cloud (simulator/cloud.py) registers vxgate as an operator does; VMs are namespaces
on hv1 and hv2 that get their address from the SoftGate by DHCP. Each test waits for
traffic, never for the agent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator import leftovers
from simulator.cloud import Cloud
from simulator.evpn_fabric import INTERNET_HOST
from simulator.fabric import wait_until
from simulator.kvm import BroadcastDomain
from simulator.traffic import FETCH, connect, server_in
from tests.scenarios.conftest import scenario_cloud

USER_DATA = "#cloud-config\nhostname: web1\n"


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud()


@pytest.fixture(scope="module")
def isolated(cloud: Cloud) -> dict[str, Any]:
    """net1 with web1 on hv1 and web2 on hv2, each with its DHCP lease."""
    net = cloud.isolated_network("net1", "10.100.0.1")
    vms = [cloud.deploy(name, net["id"], host,
                        userdata=base64.b64encode(USER_DATA.encode()).decode())
           for name, host in (("web1", "hv1"), ("web2", "hv2"))]
    assert not cloud.failed_spawns()
    return {"network": net, "vms": vms}


def ping(cloud: Cloud, vm: str, address: str) -> bool:
    return cloud.exec(vm, "ping", "-c1", "-W1", address).returncode == 0


def test_vms_get_their_addresses_by_dhcp(cloud: Cloud, isolated: dict[str, Any]) -> None:
    for vm in isolated["vms"]:
        lease = cloud.lease(vm["id"])
        assert lease["new_ip_address"] == vm["nic"][0]["ipaddress"]
        assert lease["new_routers"] == "10.100.0.1"
        assert lease["new_host_name"] == vm["name"]


def test_vms_on_two_hypervisors_reach_each_other(cloud: Cloud,
                                                   isolated: dict[str, Any]) -> None:
    web1, web2 = isolated["vms"]
    assert cloud.vm(web1["id"]).host != cloud.vm(web2["id"]).host
    cloud.lease(web1["id"])
    cloud.lease(web2["id"])
    wait_until("web1 to reach web2 across the fabric",
               lambda: ping(cloud, web1["id"], web2["nic"][0]["ipaddress"]), timeout=10)


def test_source_nat_to_the_internet(cloud: Cloud, isolated: dict[str, Any]) -> None:
    web1 = isolated["vms"][0]
    cloud.lease(web1["id"])
    source_nat = cloud.api.listPublicIpAddresses(
        associatednetworkid=isolated["network"]["id"], issourcenat="true",
        fetch_list=True)[0]["ipaddress"]
    with server_in(cloud.fabric, "up1", 7001):
        wait_until("web1 to reach the internet through source NAT", lambda: connect(
            cloud.fabric, cloud.node(web1["id"]), INTERNET_HOST, 7001) == source_nat,
            timeout=10)


def test_user_data_and_password_are_served(cloud: Cloud, isolated: dict[str, Any]) -> None:
    web1 = isolated["vms"][0]
    cloud.lease(web1["id"])
    user_data = cloud.exec(web1["id"], "python3", "-c", FETCH,
                           "http://10.100.0.1/latest/user-data").stdout
    assert user_data == USER_DATA
    password = cloud.exec(web1["id"], "curl", "-s", "--max-time", "2", "-H",
                          "DomU_Request: send_my_password", "http://10.100.0.1:8080/").stdout
    assert password.strip() == web1["password"]


def test_secrets_stay_out_of_logs_status_and_readable_files(
        cloud: Cloud, isolated: dict[str, Any]) -> None:
    """After the password and user data reached the SoftGate (the test before fetched
    them from it): the VM's password and the registration's secrets appear in no log, in
    no output of the extension entry-point that CloudStack records, in no device's status,
    and in no world-readable file of the run. The files that must hold one (the metadata
    server's data, the token files) are private."""
    web1 = isolated["vms"][0]
    cloud.lease(web1["id"])  # its DHCP served: the SoftGate has applied web1's data
    password = web1["password"]
    secrets = {"VM password": password, "CloudStack secret key": cloud.cloudstack.secret_key,
               "service admin token": cloud.service.token, **agent_tokens(cloud)}
    assert password and all(secrets.values())
    logs = [cloud.service.log_path, *cloud.fabric.dir.glob("**/*.log")]
    status = {device: cloud.service.ok("GET", f"/v1/devices/{device}/status")
              for device in cloud.topology.fabric_nodes}
    assert [f"{what} in {path}" for path in logs for what, value in secrets.items()
            if value in path.read_text(errors="replace")] == []
    assert [f"{what} in the output of {spawn.command}" for spawn in cloud.sim.spawns()
            for what, value in secrets.items() if value in spawn.output] == []
    assert [f"{what} in {device}'s status" for device, report in status.items()
            for what, value in secrets.items() if value in json.dumps(report)] == []
    holders = files_holding(cloud.fabric.dir, secrets)
    assert any(password in path.read_text(errors="replace") for path in holders), \
        "the password reached no file of the SoftGate"
    assert [str(path) for path in holders if path.stat().st_mode & 0o004] == []


def agent_tokens(cloud: Cloud) -> dict[str, str]:
    """Each device's agent token, as the fabric handed it to the agent."""
    return {f"{node}'s agent token":
            (cloud.fabric.node_dir(node) / "agent-token").read_text().strip()
            for node in cloud.topology.fabric_nodes}


def files_holding(directory: Path, secrets: dict[str, str]) -> list[Path]:
    """The regular files under `directory` that hold any of the secrets' values."""
    found = []
    for path in directory.rglob("*"):
        # Sockets, FIFOs and the namespaces' nsfs mounts have nothing to read.
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes().decode(errors="replace")
            if any(value in text for value in secrets.values()):
                found.append(path)
    return found


def test_static_nat_and_port_forward_open_with_their_firewall(
        cloud: Cloud, isolated: dict[str, Any]) -> None:
    api, net = cloud.api, isolated["network"]
    web1, web2 = isolated["vms"]
    static = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=web1["id"])
    forwarded = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    with server_in(cloud.fabric, cloud.node(web1["id"]), 8081), \
            server_in(cloud.fabric, cloud.node(web2["id"]), 22):
        api.createPortForwardingRule(ipaddressid=forwarded["id"], privateport=22,
                                     publicport=2222, protocol="tcp",
                                     virtualmachineid=web2["id"])
        # openfirewall (the default) made the port forward's ingress rule.
        wait_until("the port forward to carry traffic", lambda: connect(
            cloud.fabric, "up1", forwarded["ipaddress"], 2222) != "", timeout=10)
        assert connect(cloud.fabric, "up1", static["ipaddress"], 8081) == ""  # no rule yet
        rule = api.createFirewallRule(ipaddressid=static["id"], protocol="tcp",
                                      startport=8081, endport=8081,
                                      cidrlist="198.51.100.0/24")["firewallrule"]
        wait_until("the firewall rule to open static NAT", lambda: connect(
            cloud.fabric, "up1", static["ipaddress"], 8081) != "", timeout=10)
        api.deleteFirewallRule(id=rule["id"])
        wait_until("the firewall to close again", lambda: connect(
            cloud.fabric, "up1", static["ipaddress"], 8081) == "", timeout=10)
    assert not cloud.failed_spawns()


def test_load_balancer_spreads_and_skips_a_stopped_backend(
        cloud: Cloud, isolated: dict[str, Any]) -> None:
    api, net = cloud.api, isolated["network"]
    web1, web2 = isolated["vms"]
    shared = api.associateIpAddress(networkid=net["id"])["ipaddress"]

    def backends() -> set[str]:
        return {connect(cloud.fabric, "up1", shared["ipaddress"], 8080) for _ in range(6)}

    with server_in(cloud.fabric, cloud.node(web1["id"]), 80, "web1"), \
            server_in(cloud.fabric, cloud.node(web2["id"]), 80, "web2"):
        lb = api.createLoadBalancerRule(publicipid=shared["id"], name="web", publicport=8080,
                                        privateport=80, algorithm="roundrobin")["loadbalancer"]
        api.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=f"{web1['id']},{web2['id']}")
        wait_until("the load balancer to spread over web1 and web2",
                   lambda: backends() == {"web1", "web2"}, timeout=10)
        api.stopVirtualMachine(id=web2["id"])
        wait_until("the load balancer to skip the stopped web2",
                   lambda: backends() == {"web1"}, timeout=15)
        api.deleteLoadBalancerRule(id=lb["id"])
    api.startVirtualMachine(id=web2["id"])
    cloud.lease(web2["id"])
    assert not cloud.failed_spawns()


def test_restart_with_cleanup_converges(cloud: Cloud, isolated: dict[str, Any]) -> None:
    """restartNetwork cleanup=true: CloudStack shuts the network down and implements it
    again (then restore-network); the VMs keep their addresses and traffic recovers."""
    web1, web2 = isolated["vms"]
    cloud.api.restartNetwork(id=isolated["network"]["id"], cleanup="true")
    wait_until("web1 to reach web2 again after the restart",
               lambda: ping(cloud, web1["id"], web2["nic"][0]["ipaddress"]), timeout=20)
    with server_in(cloud.fabric, "up1", 7002):
        wait_until("web1 to reach the internet again after the restart", lambda: connect(
            cloud.fabric, cloud.node(web1["id"]), INTERNET_HOST, 7002) != "", timeout=20)
    assert not cloud.failed_spawns()


def test_delete_network_leaves_nothing_behind(cloud: Cloud, isolated: dict[str, Any]) -> None:
    """Last: the network and its VMs gone, nothing of them stays on the SoftGate (routing
    domain namespace with its nftables, VRF, VNIs, dnsmasq files and leases), on the
    hypervisors (VXLAN bridges) or in the service."""
    api, net = cloud.api, isolated["network"]
    network_id = str(cloud.sim.db.networks.by_uuid(net["id"]).db_id)  # type: ignore[union-attr]
    served = cloud.service.ok("GET", f"/v1/networks/{network_id}")
    segment = BroadcastDomain.of(served["broadcast_uri"])  # vxlan://<VNI> or vlan://<id>
    l3vni = served["l3vni"]
    domain = f"vxr{l3vni}"
    assert domain in leftovers.softgate_namespaces(cloud.fabric)
    public = [ip["ipaddress"] for ip in api.listPublicIpAddresses(
        associatednetworkid=net["id"], fetch_list=True)]
    assert public
    for vm in isolated["vms"]:
        api.destroyVirtualMachine(id=vm["id"], expunge="true")
    api.deleteNetwork(id=net["id"])
    fabric = cloud.fabric

    def remaining() -> list[str]:
        found = []
        if domain in leftovers.softgate_namespaces(fabric):
            found.append(f"namespace {domain}")
        if {segment.number, l3vni} & leftovers.evpn_vnis(fabric, "sg1"):
            found.append("VNIs in sg1's zebra")
        if domain in leftovers.vrf_lines(fabric, "sg1"):
            found.append(f"vrf {domain} in sg1's config")
        if network_id in leftovers.dnsmasq_directories(fabric):
            found.append("dnsmasq files")
        for hv in ("hv1", "hv2"):
            if segment.bridge in leftovers.bridges(fabric, hv):
                found.append(f"{segment.bridge} on {hv}")
        return found

    wait_until("nothing of net1 to be left", lambda: not remaining(), timeout=20)
    ruleset = leftovers.nft_ruleset(fabric)
    assert [address for address in ["10.100.0.", *public] if address in ruleset] == []
    assert cloud.service.call("GET", f"/v1/networks/{network_id}")[0] == 404
    assert not cloud.failed_spawns()
