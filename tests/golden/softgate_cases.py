"""The desired states behind the softgate.json goldens (tests/golden/softgate/<case>.json).

Each case declares a zone through the API, with the bodies CloudStack's commands carry,
and names the SoftGate whose compiled softgate.json is the golden. Public and upstream
addresses are RFC 5737, routed guest space RFC 2544.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.local_service import Request
from tests.golden.frr_cases import VLAN, ZONE, _device, _network, _vpc, _zone

PUBLIC = {"cidr": "203.0.113.0/24", "gateway": "203.0.113.1"}
DNS = {"dns": "192.0.2.53,192.0.2.54", "domain": "cs.example"}
USER_DATA = "#cloud-config\nruncmd:\n  - echo hello > /tmp/hi\n"


def public_ip(request: Request, address: str, source_nat: bool = False, **owner: str) -> None:
    request("PUT", f"/v1/zones/{ZONE}/public-ips/{address}",
            {**PUBLIC, "source_nat": source_nat, **owner})


def static_nat(request: Request, address: str, network_id: str, private_ip: str) -> None:
    request("PUT", f"/v1/zones/{ZONE}/public-ips/{address}/static-nat",
            {"network_id": network_id, "private_ip": private_ip})


def port_forward(request: Request, address: str, protocol: str, public: str,
                 network_id: str, private_ip: str, private: str) -> None:
    request("PUT", f"/v1/zones/{ZONE}/public-ips/{address}/port-forwards/{protocol}/{public}",
            {"network_id": network_id, "private_ip": private_ip, "private_port": private})


def acl(request: Request, network_id: str, *items: dict[str, Any]) -> None:
    request("PUT", f"/v1/networks/{network_id}/acl", {"rules": list(items)})


def load_balancer(request: Request, network_id: str, rule_id: int, address: str, port: int,
                  private_port: int, backends: tuple[str, ...],
                  algorithm: str = "roundrobin") -> None:
    request("PUT", f"/v1/networks/{network_id}/load-balancers", {"rules": [{
        "id": rule_id, "name": f"lb-{rule_id}", "publicIp": address, "publicPort": port,
        "privatePort": private_port, "protocol": "tcp", "algorithm": algorithm,
        "backends": [{"ip": ip, "port": private_port} for ip in backends]}]})


def vm(request: Request, network_id: str, mac: str, ip: str, hostname: str,
       password: str | None = None, **extra: Any) -> None:
    """One VM start, in CloudStack's order (protocol.md §3, rows 13-23)."""
    net, nic = f"/v1/networks/{network_id}", {"mac": mac, "ip": ip, "hostname": hostname,
                                              "default_nic": "true", **extra}
    vm_data = [
        {"dir": "userdata", "file": "user_data", "content": USER_DATA},
        {"dir": "metadata", "file": "instance-id", "content": f"i-2-{hostname}-VM"},
        {"dir": "metadata", "file": "local-hostname", "content": hostname},
        {"dir": "metadata", "file": "public-keys", "content": "ssh-ed25519 AAAAC3Nz u@h"},
    ]
    if password is not None:
        vm_data.append({"dir": "password", "file": "vm_password", "content": password})
    request("PUT", f"{net}/nics/{mac}", nic)
    request("PUT", f"{net}/dhcp", DNS)
    request("PUT", f"{net}/nics/{mac}/dhcp", {**nic, **DNS})
    request("PUT", f"{net}/dns", DNS)
    request("PUT", f"{net}/nics/{mac}/dns", {**nic, **DNS})
    request("PUT", f"{net}/nics/{mac}/vm-data", {**nic, "vm_data": vm_data})


def softgate(request: Request) -> str:
    _device(request, "sg1", "softgate", "10.255.2.1", ("uplink1", "uplink2"))
    return "sg1"


def isolated(request: Request) -> str:
    """Source NAT, static NAT, port forwards, a load balancer, a firewall, IPv6, two VMs."""
    _zone(request)
    _network(request, "net1", "10.100.0.0/24", ip6_cidr="2001:db8:100::/64",
             ip6_gateway="2001:db8:100::1")
    public_ip(request, "203.0.113.10", source_nat=True, network_id="net1")
    for address in ("203.0.113.11", "203.0.113.12", "203.0.113.13"):
        public_ip(request, address, network_id="net1")
    static_nat(request, "203.0.113.11", "net1", "10.100.0.11")
    port_forward(request, "203.0.113.10", "tcp", "2222", "net1", "10.100.0.12", "22")
    port_forward(request, "203.0.113.12", "udp", "5000-5003", "net1", "10.100.0.12",
                 "6000-6003")
    load_balancer(request, "net1", 71, "203.0.113.13", 80, 8080,
                  ("10.100.0.12", "10.100.0.11"))
    request("PUT", "/v1/networks/net1/firewall", {"default_egress_allow": False, "rules": [
        {"id": 61, "type": "ingress", "protocol": "tcp", "portStart": 2222,
         "publicIp": "203.0.113.10", "sourceCidrs": ["198.51.100.0/24", "2001:db8::/32"]},
        {"id": 62, "type": "ingress", "protocol": "icmp", "icmpType": 8, "icmpCode": -1,
         "publicIp": "203.0.113.11"},
        {"id": 63, "type": "ingress", "protocol": "all", "publicIp": "203.0.113.13"},
        {"id": 64, "type": "egress", "protocol": "tcp", "portStart": 80, "portEnd": 443,
         "destCidrs": ["0.0.0.0/0"]},
        # Only IPv6 destinations: no IPv4 packet matches, so it is not in the domain.
        {"id": 65, "type": "egress", "protocol": "udp", "destCidrs": ["2001:db8::/32"]},
    ]})
    vm(request, "net1", "02:00:0a:64:00:0b", "10.100.0.11", "web-1", password="Pa55-w0rd",
       ip6_address="2001:db8:100::b")
    vm(request, "net1", "02:00:0a:64:00:0c", "10.100.0.12", "web-2")
    return softgate(request)


def vpcs(request: Request) -> str:
    """Two VPCs with the same tier CIDRs; ACLs by number, one tier with an empty ACL."""
    _zone(request)
    for vpc in ("vpc1", "vpc2"):
        _vpc(request, vpc, "10.1.0.0/16")
        _network(request, f"{vpc}-web", "10.1.1.0/24", vpc_id=vpc)
        _network(request, f"{vpc}-db", "10.1.2.0/24", vpc_id=vpc)
    public_ip(request, "203.0.113.20", source_nat=True, vpc_id="vpc1")
    public_ip(request, "203.0.113.21", source_nat=True, vpc_id="vpc2")
    public_ip(request, "203.0.113.22", vpc_id="vpc1")
    public_ip(request, "203.0.113.23", vpc_id="vpc1")
    static_nat(request, "203.0.113.22", "vpc1-web", "10.1.1.10")
    port_forward(request, "203.0.113.21", "tcp", "8022", "vpc2-db", "10.1.2.10", "22")
    load_balancer(request, "vpc1-web", 81, "203.0.113.23", 443, 443,
                  ("10.1.1.11", "10.1.1.12"), algorithm="source")
    acl(request, "vpc1-web",
        {"number": 10, "action": "allow", "trafficType": "ingress", "protocol": "tcp",
         "portStart": 443, "portEnd": 443},
        {"number": 20, "action": "allow", "trafficType": "ingress", "protocol": "icmp",
         "icmpType": 8, "icmpCode": 0},
        {"number": 30, "action": "deny", "trafficType": "ingress", "protocol": "47",
         "sourceCidrs": ["10.1.2.0/24"]},
        {"number": 40, "action": "allow", "trafficType": "egress", "protocol": "all"})
    acl(request, "vpc1-db",
        {"number": 5, "action": "allow", "trafficType": "ingress", "protocol": "tcp",
         "portStart": 5432, "portEnd": 5432, "sourceCidrs": ["10.1.1.0/24"]})
    acl(request, "vpc2-web",
        {"number": 1, "action": "allow", "trafficType": "ingress", "protocol": "all"},
        {"number": 2, "action": "allow", "trafficType": "egress", "protocol": "all"})
    # vpc2-db: no ACL items, a terminal deny.
    vm(request, "vpc1-web", "02:00:0a:01:01:0a", "10.1.1.10", "web-1")
    vm(request, "vpc2-web", "02:00:0a:01:01:0b", "10.1.1.10", "web-1")
    return softgate(request)


def routed(request: Request) -> str:
    """A ROUTED network: its CIDR is routed in, no NAT reaches the agent, and its ingress
    rules (routing firewall rules: publicIp "") open guest addresses."""
    _zone(request)
    _network(request, "routed1", "198.18.10.0/24", mode="routed")
    public_ip(request, "203.0.113.30", network_id="routed1")
    # The API records static NAT for any network; a routed domain does no NAT.
    static_nat(request, "203.0.113.30", "routed1", "198.18.10.10")
    request("PUT", "/v1/networks/routed1/firewall", {"default_egress_allow": True, "rules": [
        {"id": 91, "type": "ingress", "protocol": "tcp", "portStart": 22, "publicIp": "",
         "sourceCidrs": ["192.0.2.0/24"], "destCidrs": ["198.18.10.10/32"]},
        {"id": 92, "type": "egress", "protocol": "udp", "portStart": 53,
         "destCidrs": ["192.0.2.53/32"]},
        # No destination named: the whole network.
        {"id": 93, "type": "ingress", "protocol": "icmp", "icmpType": 8, "icmpCode": 0,
         "publicIp": "", "sourceCidrs": ["0.0.0.0/0"], "destCidrs": []}]})
    vm(request, "routed1", "02:00:c6:12:0a:0a", "198.18.10.10", "app-1")
    return softgate(request)


def vlan_handoff(request: Request) -> str:
    """An 802.1Q transport: VLAN bridges, no VXLAN devices, no L3VNI."""
    _zone(request)
    request("PUT", f"/v1/physical-networks/{VLAN}", {"zone_id": ZONE, "name": "vlan",
                                                     "isolation_method": "vlan",
                                                     "l3vni_range": "6000000-6999999"})
    _network(request, "net1", "10.100.0.0/24", physnet=VLAN)
    _vpc(request, "vpc1", "10.1.0.0/16", physnet=VLAN)
    _network(request, "vpc1-web", "10.1.1.0/24", physnet=VLAN, vpc_id="vpc1")
    public_ip(request, "203.0.113.10", source_nat=True, network_id="net1")
    public_ip(request, "203.0.113.20", source_nat=True, vpc_id="vpc1")
    vm(request, "net1", "02:00:0a:64:00:0b", "10.100.0.11", "vm-1")
    _device(request, "sg1", "softgate", "10.255.2.1", (),
            upstream_peers=[{"address": "198.51.100.1", "remote_asn": 64496}])
    return "sg1"


CASES: dict[str, Callable[[Request], str]] = {
    function.__name__: function for function in (isolated, vpcs, routed, vlan_handoff)
}
