"""`vxgate cloudstack audit` against the CloudStack stand-in and a real service, with
drift injected on both sides: objects removed from or added to the service through its
API behind CloudStack's back, and objects removed from or added to the stand-in's
database without the extension hearing of it. No fabric: the audit reads APIs only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provider_service import cli
from simulator.cloudstack.cloud import CloudStackSim
from simulator.cloudstack.model import FirewallRule, LoadBalancer
from tests.functional.test_cloudstack_sim import Cloud, create_network, deploy, stand_in_cloud


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with stand_in_cloud("vxaudit-") as made:
        yield made


@pytest.fixture(scope="module")
def world(cloud: Cloud) -> dict[str, Any]:
    """An isolated network with a VM, a port forward, a static NAT and a load balancer;
    a second one; a VPC with a tier, a VM and an ACL list of one item."""
    api = cloud.api
    net1 = create_network(cloud, "net1", "10.110.0.1")
    vm1 = deploy(cloud, "vm1", net1["id"])
    ip = api.associateIpAddress(networkid=net1["id"])["ipaddress"]
    forward = api.createPortForwardingRule(ipaddressid=ip["id"], privateport=22,
                                           publicport=2222, protocol="tcp",
                                           virtualmachineid=vm1["id"])["portforwardingrule"]
    api.createPortForwardingRule(ipaddressid=ip["id"], privateport=80, publicport=8080,
                                 protocol="tcp", virtualmachineid=vm1["id"])
    lb = api.createLoadBalancerRule(publicipid=ip["id"], name="web", publicport=80,
                                    privateport=8080, algorithm="roundrobin",
                                    openfirewall=False)["loadbalancer"]
    api.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=vm1["id"])
    static = api.associateIpAddress(networkid=net1["id"])["ipaddress"]
    api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=vm1["id"])
    net2 = create_network(cloud, "net2", "10.111.0.1")
    deploy(cloud, "vm2", net2["id"])
    vpc = api.createVPC(name="vpc1", displaytext="vpc1", cidr="10.12.0.0/16",
                        vpcofferingid=cloud.offerings["vxgate-vpc"], zoneid=cloud.zone)["vpc"]
    tier = create_network(cloud, "tier1", "10.12.1.1", vpcid=vpc["id"])
    deploy(cloud, "vm3", tier["id"])
    acl = api.createNetworkACLList(name="acl1", vpcid=vpc["id"])["networkacllist"]
    api.createNetworkACL(aclid=acl["id"], number=10, protocol="tcp", startport=22,
                         endport=22, cidrlist="0.0.0.0/0", action="allow",
                         traffictype="ingress")
    api.replaceNetworkACLList(networkid=tier["id"], aclid=acl["id"])
    assert not cloud.failed()
    return {"net1": net1, "net2": net2, "ip": ip, "forward": forward, "static": static,
            "tier": tier}


def audit(cloud: Cloud, capsys: pytest.CaptureFixture[str], tmp_path: Path,
          *args: str) -> tuple[int, str, str]:
    token = tmp_path / "token"
    token.write_text(cloud.service.token)
    stand_in = cloud.stand_in
    code = cli.main(["cloudstack", "audit", "--endpoint", stand_in.endpoint,
                     f"--api-key={stand_in.api_key}", f"--secret-key={stand_in.secret_key}",
                     "--service-url", f"http://{cloud.service.host}:{cloud.service.port}",
                     "--token-file", str(token), *args])
    out, err = capsys.readouterr()
    return code, out, err


def db_id(table: Any, uuid: str) -> str:
    return str(table.by_uuid(uuid).db_id)


def forget_network(sim: CloudStackSim, network: int) -> None:
    """deleteNetwork as CloudStack's database sees it, with no event sent: its VMs and
    addresses go too."""
    for vm in [vm for vm in sim.db.vms.values() if any(n.network == network for n in vm.nics)]:
        del sim.db.vms[vm.db_id]
    for ip in sim.db.public_ips.values():
        if ip.network == network:
            ip.network, ip.source_nat, ip.state = None, False, "Free"
    del sim.db.networks[network]


def inject_lb_and_acl_drift(cloud: Cloud, net1: str, tier: str, public_ip: int) -> None:
    """The service's LB loses its member and its tier's ACL gains an item; CloudStack's
    database gains an LB rule and changes an ACL item, without an event."""
    service, sim = cloud.service, cloud.sim
    (web,) = service.ok("GET", f"/v1/networks/{net1}/load-balancers")["rules"]
    service.ok("PUT", f"/v1/networks/{net1}/load-balancers",
               {"rules": [{**web, "backends": []}]})
    items = service.ok("GET", f"/v1/networks/{tier}/acl")["rules"]
    service.ok("PUT", f"/v1/networks/{tier}/acl", {"rules": [*items, {
        "number": 20, "action": "allow", "trafficType": "ingress", "protocol": "udp",
        "portStart": 53, "portEnd": 53, "sourceCidrs": ["198.51.100.0/24"]}]})
    sim.db.load_balancers.add(LoadBalancer(sim.db.load_balancers.next_id(),
                                           network=int(net1), name="api",
                                           public_ip=public_ip, public_port=443,
                                           private_port=8443, algorithm="leastconn"))
    next(i for i in sim.db.acl_items.values() if i.number == 10).action = "deny"


def test_no_drift_after_cloudstack_sent_everything(
        cloud: Cloud, world: dict[str, Any], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    code, out, err = audit(cloud, capsys, tmp_path)
    assert (code, err) == (0, ""), out
    assert out == ("no drift: CloudStack and the service agree on 3 networks, 1 VPC, "
                          "5 public IPs, 2 port forwards, 2 firewall rules, 1 LB rule and 1 ACL "
                   "item\n"), out


def test_drift_both_ways_is_reported_and_repaired(
        cloud: Cloud, world: dict[str, Any], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    service, sim = cloud.service, cloud.sim
    address, static = world["ip"]["ipaddress"], world["static"]["ipaddress"]
    net1 = db_id(sim.db.networks, world["net1"]["id"])
    # The service loses what CloudStack has: a port forward and a static NAT ...
    service.ok("DELETE", f"/v1/zones/1/public-ips/{address}/port-forwards/tcp/2222")
    service.ok("DELETE", f"/v1/zones/1/public-ips/{static}/static-nat")
    # ... and holds what CloudStack never had: a network and an address.
    service.ok("PUT", "/v1/networks/999", {"zone_id": "1", "cidr": "10.199.0.0/24",
                                           "gateway": "10.199.0.1",
                                           "physical_network_id": "200"})
    service.ok("PUT", "/v1/zones/1/public-ips/203.0.113.200", {
        "network_id": net1, "cidr": "203.0.113.0/24", "gateway": "203.0.113.1"})
    # CloudStack changes without the extension hearing: net2 and a port forward gone,
    # a firewall rule added.
    net2 = sim.db.networks.by_uuid(world["net2"]["id"])
    assert net2 is not None
    forget_network(cloud.sim, net2.db_id)
    http = next(f for f in sim.db.port_forwards.values() if f.public_ports == (8080, 8080))
    del sim.db.port_forwards[http.db_id]
    public = sim.db.public_ips.by_uuid(world["ip"]["id"])
    assert public is not None
    sim.db.firewall_rules.add(FirewallRule(sim.db.firewall_rules.next_id(),
                                           network=int(net1), protocol="udp",
                                           ports=(53, 53), public_ip=public.db_id,
                                           source_cidrs=["198.51.100.0/24"]))
    tier = db_id(sim.db.networks, world["tier"]["id"])
    inject_lb_and_acl_drift(cloud, net1, tier, public.db_id)

    code, out, err = audit(cloud, capsys, tmp_path)
    assert (code, err) == (1, ""), out
    print(out)  # the sample in docs/cloudstack-audit.md
    lines = out.splitlines()
    assert lines[0].split() == ["KIND", "KEY", "WHERE", "DETAIL", "REPAIR"]
    rows = [" ".join(line.split()) for line in lines[1:-2]]
    assert rows == [
        "network vxlan://10001 10.111.0.0/24 service only network 205 (implemented) "
        "delete it from the service (as destroy-network would)",
        "network vxlan://10003 10.199.0.0/24 service only network 999 (no state) "
        "delete it from the service (as destroy-network would)",
        f"public-ip 203.0.113.200 service only network {net1} "
        "delete it from the service (as release-ip would)",
        f"static-nat {static} cloudstack only to 10.110.0.2 "
        "set it in the service (as add-static-nat would)",
        f"port-forward {address} tcp/2222 cloudstack only to 10.110.0.2:22 "
        "set it in the service (as add-port-forward would)",
        f"port-forward {address} tcp/8080 service only to 10.110.0.2:80 "
        "delete it from the service (as delete-port-forward would)",
        f"firewall-rule network {net1}: ingress udp/53 to {address} from 198.51.100.0/24 "
        "cloudstack only - cannot repair: the API does not show CloudStack's internal id "
        "the service keys rules by — run restartNetwork cleanup=true",
        f"lb-rule network {net1}: {address} tcp/80 different roundrobin to :8080 "
        "(10.110.0.2) (service: roundrobin to :8… set it in the service (as apply-lb-rules "
        "would)",
        f"lb-rule network {net1}: {address} tcp/443 cloudstack only leastconn to :8443 "
        "(no members) cannot repair: the API does not show CloudStack's internal id "
        "the service keys rules by — run restartNetwork cleanup=true",
        f"acl-item network {tier}: #10 different deny ingress tcp/22 from 0.0.0.0/0 "
        "(service: allow ingress… set the tier's ACL in the service "
        "(as apply-network-acl would)",
        f"acl-item network {tier}: #20 service only allow ingress udp/53 from "
        "198.51.100.0/24 remove it from the service's ACL (as apply-network-acl would)",
    ], out
    assert lines[-1] == ("11 drift items: 4 only in CloudStack, 5 only in the service, "
                         "2 different; 9 repairable"), out

    code, out, err = audit(cloud, capsys, tmp_path, "--repair")
    assert (code, err) == (1, ""), out
    assert "Repaired 9 of them through the service's API." in out
    assert "Left after repair:" in out and "firewall-rule" in out and "tcp/443" in out
    (web,) = service.ok("GET", f"/v1/networks/{net1}/load-balancers")["rules"]
    assert web["backends"] == [{"ip": "10.110.0.2", "port": 8080}]
    assert [(i["number"], i["action"]) for i in
            service.ok("GET", f"/v1/networks/{tier}/acl")["rules"]] == [(10, "deny")]
    assert service.ok("GET", f"/v1/zones/1/public-ips/{static}")["static_nat"][
        "private_ip"] == "10.110.0.2"
    assert service.call("GET", "/v1/networks/999")[0] == 404
    # What the audit cannot repair, CloudStack re-sends on a restart with cleanup.
    cloud.api.restartNetwork(id=world["net1"]["id"], cleanup=True)
    code, out, err = audit(cloud, capsys, tmp_path, "--repair")
    assert (code, err, out.splitlines()[-1][:9]) == (0, "", "no drift:"), out
    code, out, _err = audit(cloud, capsys, tmp_path, "--json")
    assert code == 0 and json.loads(out)["drift"] == []


def test_periodic_audit_prints_one_line_a_pass(
        cloud: Cloud, world: dict[str, Any], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    cloud.service.ok("PUT", "/v1/networks/998", {"zone_id": "1", "cidr": "10.198.0.0/24",
                                                 "gateway": "10.198.0.1",
                                                 "physical_network_id": "200"})
    code, out, err = audit(cloud, capsys, tmp_path, "--every", "0.01", "--passes", "2",
                           "--repair")
    lines = out.splitlines()
    assert (code, err, len(lines)) == (0, "", 2), out
    assert lines[0].endswith("pass 1: 1 drift item found, 1 repaired; no drift"), out
    assert lines[1].endswith("pass 2: 0 drift items found, 0 repaired; no drift"), out


def test_unreachable_service_is_one_line_without_secrets(
        cloud: Cloud, world: dict[str, Any], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(cloud.service.token)
    stand_in = cloud.stand_in
    code = cli.main(["cloudstack", "audit", "--endpoint", stand_in.endpoint,
                     f"--api-key={stand_in.api_key}", f"--secret-key={stand_in.secret_key}",
                     "--service-url", "http://127.0.0.1:9", "--token-file", str(token)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("vxgate: cloudstack audit: cannot reach the service at "
                          "http://127.0.0.1:9") and err.count("\n") == 1
    for secret in (stand_in.secret_key, stand_in.api_key, cloud.service.token):
        assert secret not in err
    code = cli.main(["cloudstack", "audit", "--endpoint", stand_in.endpoint,
                     "--api-key", stand_in.api_key, "--secret-key", "wrong-secret",
                     "--service-url", f"http://{cloud.service.host}:{cloud.service.port}",
                     "--token-file", str(token)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "wrong-secret" not in err


