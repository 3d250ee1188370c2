"""`vxgate cloudstack audit` as data: two snapshots in, a list of drift items out.

Pure functions only; audit_cli.py fetches both sides and runs the repairs.

The two sides name objects differently. The extension's payloads carry CloudStack's
numeric database ids (the service keys networks, VPCs and zones by them); CloudStack's API
shows only UUIDs. So objects are matched on what both sides show:

- network: the broadcast URI (CloudStack's `broadcasturi`, admins only, = the service's
  `broadcast_uri`, e.g. vxlan://10000); a network left over on both sides is then matched on
  its CIDR and gateway when exactly one candidate has them.
- zone: through matched networks; else by name; else the only zone of each side.
- VPC: through its matched tiers; else by CIDR when exactly one candidate has it.
- public IP: zone + address (an address is unique per zone).
- static NAT: its public IP. Port forward: public IP + protocol + public port range.
- firewall rule: the network + (direction, protocol, ports, ICMP type/code, public IP,
  source CIDRs, destination CIDRs): rule ids differ between the two sides.
- load-balancer rule and network ACL item: see audit_rules.py.

Only CloudStack objects of vxgate's offerings count: networks and VPCs whose offering
names a vxgate provider, and the public IPs and rules of those.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from provider_service.cloudstack_registration import extension_names

Json = dict[str, Any]
CLOUDSTACK_ONLY, SERVICE_ONLY, DIFFERENT = "cloudstack only", "service only", "different"
RESTART_NETWORK = "run restartNetwork cleanup=true"
RESTART_VPC = "run restartVPC cleanup=true"
NO_ID = "the API does not show CloudStack's internal id the service keys {what} by"
# Order the repair calls run in: rules before the addresses they use, addresses before
# their networks, tiers before their VPCs; then what is re-created, addresses first.
PHASE_DROP_RULES, PHASE_DROP_IPS, PHASE_DROP_NETWORKS, PHASE_DROP_VPCS = 0, 1, 2, 3
PHASE_ADD_IPS, PHASE_ADD_RULES = 4, 5


@dataclass(frozen=True)
class Call:
    """One request to the service's API that a repair makes."""

    method: str
    path: str
    body: Json | None = field(default=None, compare=False, hash=False)
    phase: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Drift:
    kind: str  # network, vpc, public-ip, static-nat, port-forward, firewall-rule,
    #            lb-rule, acl-item
    key: str  # how the object is matched, readable: "vxlan://10000 10.1.0.0/24"
    where: str  # CLOUDSTACK_ONLY, SERVICE_ONLY or DIFFERENT
    detail: str
    repair: str  # what --repair does, or "cannot repair: <reason> — <what to run>"
    calls: tuple[Call, ...] = ()

    @property
    def repairable(self) -> bool:
        return bool(self.calls)


@dataclass(frozen=True)
class CloudStackView:
    """CloudStack's list* answers (as the `cs` client returns them)."""

    zones: list[Json]
    network_offerings: list[Json]
    vpc_offerings: list[Json]
    networks: list[Json]
    vpcs: list[Json]
    public_ips: list[Json]
    port_forwards: list[Json]
    firewall_rules: list[Json]  # listFirewallRules + listEgressFirewallRules
    # listLoadBalancerRules, each with "memberips": its members' addresses on its network
    load_balancers: list[Json] = field(default_factory=list)
    acl_items: list[Json] = field(default_factory=list)  # listNetworkACLs


@dataclass(frozen=True)
class ServiceView:
    """The service's GET answers."""

    zones: list[Json]
    networks: list[Json]
    vpcs: list[Json]
    public_ips: list[Json]  # GET /v1/zones/<z>/public-ips, every zone
    port_forwards: list[Json]  # GET .../port-forwards, each with its "zone_id" added
    firewalls: dict[str, Json]  # network id → GET /v1/networks/<id>/firewall
    load_balancers: dict[str, Json] = field(default_factory=dict)  # → GET .../load-balancers
    acls: dict[str, Json] = field(default_factory=dict)  # VPC tier id → GET .../acl


@dataclass
class Matching:
    """CloudStack UUIDs → the service's ids, as far as they could be paired."""

    networks: dict[str, str] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    vpcs: dict[str, str] = field(default_factory=dict)


def repair_plan(drifts: Iterable[Drift]) -> list[Call]:
    """Every repair call once, in phase order (a firewall PUT serves several items)."""
    seen: dict[tuple[str, str], Call] = {}
    for drift in drifts:
        for call in drift.calls:
            seen.setdefault((call.method, call.path), call)
    return sorted(seen.values(), key=lambda call: call.phase)


def compare(cs: CloudStackView, svc: ServiceView, provider: str = "vxgate") -> list[Drift]:
    """Drift both ways between CloudStack and the service."""
    networks = _our_networks(cs, provider)
    vpcs = _our_vpcs(cs, provider)
    match = match_objects(cs, svc, networks, vpcs)
    drifts = _network_drift(networks, svc, match)
    drifts += _vpc_drift(vpcs, svc, match)
    svc = _without_doomed(svc, set(match.networks.values()))
    ips = [ip for ip in cs.public_ips if ip.get("associatednetworkid") in networks
           or ip.get("vpcid") in vpcs]
    ip_drifts, repairable_ips = _public_ip_drift(ips, svc, match)
    drifts += ip_drifts
    drifts += _static_nat_drift(ips, svc, match, repairable_ips)
    forwards = [f for f in cs.port_forwards if f.get("networkid") in networks]
    drifts += _port_forward_drift(forwards, svc, match, repairable_ips)
    rules = [r for r in cs.firewall_rules if r.get("networkid") in networks]
    drifts += _firewall_drift(rules, svc, match)
    # Here, not at the top: audit_rules builds on this module's Drift and Call.
    from provider_service import audit_rules

    lbs = [r for r in cs.load_balancers if r.get("networkid") in networks]
    drifts += audit_rules.lb_drift(lbs, svc.load_balancers, match)
    drifts += audit_rules.acl_drift(networks, cs.acl_items, svc.acls, match)
    return drifts


def _without_doomed(svc: ServiceView, matched: set[str]) -> ServiceView:
    """The service's view less what goes with the networks a repair deletes (their
    addresses and rules cascade): one drift line per such network, not one per rule."""
    doomed = {n["id"] for n in svc.networks} - matched
    ips = [ip for ip in svc.public_ips if ip.get("network_id") not in doomed]
    kept = {(str(ip["zone_id"]), ip["address"]) for ip in ips}
    return replace(
        svc, public_ips=ips,
        port_forwards=[f for f in svc.port_forwards
                       if (str(f["zone_id"]), f["public_ip"]) in kept],
        firewalls={k: v for k, v in svc.firewalls.items() if k in matched},
        load_balancers={k: v for k, v in svc.load_balancers.items() if k in matched},
        acls={k: v for k, v in svc.acls.items() if k in matched})


# --- which CloudStack objects are ours --------------------------------------------------


def _ours(offerings: Iterable[Json], provider: str) -> set[str]:
    names = {name.casefold() for name in extension_names(provider)}
    return {o["id"] for o in offerings
            if any(p.get("name", "").casefold() in names
                   for s in o.get("service", []) for p in s.get("provider", []))}


def _our_networks(cs: CloudStackView, provider: str) -> dict[str, Json]:
    offerings = _ours(cs.network_offerings, provider)
    return {n["id"]: n for n in cs.networks if n.get("networkofferingid") in offerings}


def _our_vpcs(cs: CloudStackView, provider: str) -> dict[str, Json]:
    offerings = _ours(cs.vpc_offerings, provider)
    return {v["id"]: v for v in cs.vpcs if v.get("vpcofferingid") in offerings}


# --- matching ---------------------------------------------------------------------------


def match_objects(cs: CloudStackView, svc: ServiceView, networks: Mapping[str, Json],
                  vpcs: Mapping[str, Json]) -> Matching:
    match = Matching()
    by_uri = {n["broadcast_uri"]: n["id"] for n in svc.networks}
    for uuid, network in networks.items():
        found = by_uri.get(network.get("broadcasturi", ""))
        if found is not None:
            match.networks[uuid] = found
    _pair_unique(match.networks, networks.values(), svc.networks,
                 lambda n: (n["cidr"], n["gateway"]))
    service_networks = {n["id"]: n for n in svc.networks}
    for uuid, service_id in match.networks.items():
        ours, theirs = service_networks[service_id], networks[uuid]
        match.zones.setdefault(theirs["zoneid"], ours["zone_id"])
        if theirs.get("vpcid") and ours.get("vpc_id"):
            match.vpcs.setdefault(theirs["vpcid"], ours["vpc_id"])
    _pair_unique(match.zones, cs.zones, svc.zones, lambda z: z.get("name", ""))
    if len(cs.zones) == len(svc.zones) == 1:
        match.zones.setdefault(cs.zones[0]["id"], svc.zones[0]["id"])
    _pair_unique(match.vpcs, vpcs.values(), svc.vpcs, lambda v: v["cidr"])
    return match


def _pair_unique(pairs: dict[str, str], theirs: Iterable[Json], ours: Iterable[Json],
                 key: Callable[[Json], object]) -> None:
    """Pair the objects left on both sides whose key only one object on each side has."""
    taken = set(pairs.values())
    left_theirs = [o for o in theirs if o["id"] not in pairs]
    left_ours = [o for o in ours if o["id"] not in taken]
    for item in left_theirs:
        mine = [o for o in left_ours if key(o) == key(item)]
        same = [o for o in left_theirs if key(o) == key(item)]
        if len(mine) == 1 and len(same) == 1 and key(item):
            pairs[item["id"]] = mine[0]["id"]


# --- networks and VPCs ----------------------------------------------------------------


def _network_drift(networks: Mapping[str, Json], svc: ServiceView,
                   match: Matching) -> list[Drift]:
    drifts = []
    matched = set(match.networks.values())
    for uuid, network in networks.items():
        key = f"{network.get('broadcasturi', '-')} {network.get('cidr', '')}"
        restart = f"{RESTART_NETWORK} (network {network.get('name', uuid)})"
        if uuid not in match.networks:
            if network.get("broadcasturi"):  # not implemented yet: nothing to hold
                drifts.append(Drift("network", key, CLOUDSTACK_ONLY,
                                    f"{network.get('name', '')} ({uuid}) "
                                    f"{network.get('state', '')}",
                                    _cannot(NO_ID.format(what="networks"), restart)))
            continue
        ours = next(n for n in svc.networks if n["id"] == match.networks[uuid])
        differences = _differences((
            ("broadcast URI", network.get("broadcasturi") or ours["broadcast_uri"],
             ours["broadcast_uri"]),
            ("CIDR", network.get("cidr", ""), ours["cidr"]),
            ("gateway", network.get("gateway", ""), ours["gateway"]),
            ("VPC", match.vpcs.get(network.get("vpcid") or "", network.get("vpcid")),
             ours.get("vpc_id"))))
        if differences:
            drifts.append(Drift("network", key, DIFFERENT,
                                f"network {ours['id']}: " + "; ".join(differences),
                                _cannot("the service takes networks from CloudStack's "
                                        "events only", restart)))
    for ours in svc.networks:
        if ours["id"] not in matched:
            drifts.append(Drift(
                "network", f"{ours['broadcast_uri']} {ours['cidr']}", SERVICE_ONLY,
                f"network {ours['id']} ({ours.get('state') or 'no state'})",
                "delete it from the service (as destroy-network would)",
                (Call("DELETE", f"/v1/networks/{_q(ours['id'])}",
                      phase=PHASE_DROP_NETWORKS),)))
    return drifts


def _vpc_drift(vpcs: Mapping[str, Json], svc: ServiceView, match: Matching) -> list[Drift]:
    drifts = []
    for uuid, vpc in vpcs.items():
        restart = f"{RESTART_VPC} (VPC {vpc.get('name', uuid)})"
        if uuid not in match.vpcs:
            if vpc.get("state", "Enabled") == "Enabled":
                drifts.append(Drift("vpc", vpc.get("cidr", ""), CLOUDSTACK_ONLY,
                                    f"{vpc.get('name', '')} ({uuid})",
                                    _cannot(NO_ID.format(what="VPCs"), restart)))
            continue
        ours = next((v for v in svc.vpcs if v["id"] == match.vpcs[uuid]), None)
        if ours is None:  # a tier names a VPC the service lacks
            drifts.append(Drift("vpc", vpc.get("cidr", ""), CLOUDSTACK_ONLY,
                                f"{vpc.get('name', '')} ({uuid}), VPC {match.vpcs[uuid]} "
                                "of its tiers", _cannot("the service takes VPCs from "
                                                        "implement-vpc only", restart)))
        elif vpc.get("cidr") != ours["cidr"]:
            drifts.append(Drift("vpc", vpc.get("cidr", ""), DIFFERENT,
                                f"VPC {ours['id']}: CIDR {vpc.get('cidr')} in CloudStack, "
                                f"{ours['cidr']} in the service",
                                _cannot("the service takes VPCs from implement-vpc only",
                                        restart)))
    matched = set(match.vpcs.values())
    for ours in svc.vpcs:
        if ours["id"] not in matched:
            drifts.append(Drift("vpc", ours["cidr"], SERVICE_ONLY, f"VPC {ours['id']}",
                                "delete it from the service (as shutdown-vpc of an inactive "
                                "VPC would)",
                                (Call("DELETE", f"/v1/vpcs/{_q(ours['id'])}",
                                      phase=PHASE_DROP_VPCS),)))
    return drifts


# --- public IPs and static NAT -------------------------------------------------------


def _ip_path(zone: str, address: str) -> str:
    return f"/v1/zones/{_q(zone)}/public-ips/{_q(address)}"


def _owner(ip: Json, match: Matching) -> tuple[dict[str, str] | None, str]:
    """The service's owner fields for a CloudStack address, or why there is none."""
    if ip.get("vpcid"):
        vpc = match.vpcs.get(ip["vpcid"])
        return ({"vpc_id": vpc}, "") if vpc else (None, "its VPC is not in the service")
    network = match.networks.get(ip.get("associatednetworkid") or "")
    return ({"network_id": network}, "") if network else (
        None, "its network is not in the service")


def _range_of(address: str, zone: str, svc: ServiceView) -> Json | None:
    """cidr/gateway/vlan of a service address in the same zone and range: listPublicIp-
    Addresses does not show an address's range."""
    ip = ipaddress.ip_address(address)
    for other in svc.public_ips:
        if str(other["zone_id"]) == zone and ip in ipaddress.ip_network(other["cidr"]):
            return {"cidr": other["cidr"], "gateway": other["gateway"], "vlan": other["vlan"]}
    return None


def _public_ip_drift(ips: list[Json], svc: ServiceView,
                     match: Matching) -> tuple[list[Drift], set[tuple[str, str]]]:
    """The drift, and the (zone, address) pairs the service has or a repair creates."""
    drifts = []
    ours = {(str(ip["zone_id"]), ip["address"]): ip for ip in svc.public_ips}
    available = set(ours)
    seen = set()
    for ip in ips:
        zone = _zone(match, ip["zoneid"])
        key = (zone, ip["ipaddress"])
        seen.add(key)
        owner, why = _owner(ip, match)
        source_nat = bool(ip.get("issourcenat"))
        mine = ours.get(key)
        if mine is None:
            known = _range_of(ip["ipaddress"], zone, svc)
            detail = "source NAT" if source_nat else "allocated"
            if ip["zoneid"] not in match.zones:
                why = "its zone is not in the service"
            elif owner is not None and known is None:
                why = "the API does not show its range and the service has no other " \
                      "address of it"
            if why:
                drifts.append(Drift("public-ip", ip["ipaddress"], CLOUDSTACK_ONLY, detail,
                                    _cannot(why, RESTART_NETWORK)))
                continue
            body = {**(owner or {}), **(known or {}), "source_nat": source_nat}
            drifts.append(Drift("public-ip", ip["ipaddress"], CLOUDSTACK_ONLY, detail,
                                "add it to the service (as assign-ip would)",
                                (Call("PUT", _ip_path(*key), body, PHASE_ADD_IPS),)))
            available.add(key)
            continue
        differences = _differences((
            ("owner", owner, {k: mine[k] for k in (owner or {})} if owner else None),
            ("source NAT", source_nat, bool(mine.get("source_nat")))))
        if not differences:
            continue
        if owner is None:
            drifts.append(Drift("public-ip", ip["ipaddress"], DIFFERENT,
                                "; ".join(differences), _cannot(why, RESTART_NETWORK)))
            continue
        body = {**owner, "cidr": mine["cidr"], "gateway": mine["gateway"],
                "vlan": mine["vlan"], "source_nat": source_nat}
        drifts.append(Drift("public-ip", ip["ipaddress"], DIFFERENT, "; ".join(differences),
                            "update it in the service",
                            (Call("PUT", _ip_path(*key), body, PHASE_ADD_IPS),)))
    for key, mine in ours.items():
        if key not in seen:
            owner_text = f"network {mine['network_id']}" if mine.get("network_id") else \
                f"VPC {mine.get('vpc_id')}"
            drifts.append(Drift("public-ip", mine["address"], SERVICE_ONLY, owner_text,
                                "delete it from the service (as release-ip would)",
                                (Call("DELETE", _ip_path(*key), phase=PHASE_DROP_IPS),)))
            available.discard(key)
    return drifts, available


def _static_nat_drift(ips: list[Json], svc: ServiceView, match: Matching,
                      available: set[tuple[str, str]]) -> list[Drift]:
    drifts = []
    ours = {(str(ip["zone_id"]), ip["address"]): ip["static_nat"] for ip in svc.public_ips
            if ip.get("static_nat")}
    for ip in ips:
        key = (_zone(match, ip["zoneid"]), ip["ipaddress"])
        mine = ours.pop(key, None)
        if not ip.get("isstaticnat"):
            if mine is not None and key in available:
                drifts.append(Drift("static-nat", ip["ipaddress"], SERVICE_ONLY,
                                    f"to {mine['private_ip']}",
                                    "delete it from the service (as delete-static-nat "
                                    "would)", (Call("DELETE", _ip_path(*key) + "/static-nat",
                                                    phase=PHASE_DROP_RULES),)))
            continue
        private = ip.get("vmipaddress", "")
        network = match.networks.get(ip.get("associatednetworkid") or "")
        if mine is not None and mine["private_ip"] == private:
            continue
        where = CLOUDSTACK_ONLY if mine is None else DIFFERENT
        detail = f"to {private or '?'}" + (f" (service: {mine['private_ip']})" if mine else "")
        if key not in available or network is None or not private:
            why = "its public IP cannot be added" if key not in available else \
                "its network is not in the service" if network is None else \
                "the API does not show its private address"
            drifts.append(Drift("static-nat", ip["ipaddress"], where, detail,
                                _cannot(why, RESTART_NETWORK)))
            continue
        drifts.append(Drift("static-nat", ip["ipaddress"], where, detail,
                            "set it in the service (as add-static-nat would)",
                            (Call("PUT", _ip_path(*key) + "/static-nat",
                                  {"network_id": network, "private_ip": private},
                                  PHASE_ADD_RULES),)))
    for (zone, address), mine in ours.items():  # addresses CloudStack does not show
        if (zone, address) in available:
            drifts.append(Drift("static-nat", address, SERVICE_ONLY,
                                f"to {mine['private_ip']}",
                                "delete it from the service (as delete-static-nat would)",
                                (Call("DELETE", _ip_path(zone, address) + "/static-nat",
                                      phase=PHASE_DROP_RULES),)))
    return drifts


# --- port forwards ----------------------------------------------------------------------


def _ranged(start: object, end: object) -> str:
    first, last = int(str(start)), int(str(end or start))
    return str(first) if first == last else f"{first}-{last}"


def _port_forward_drift(forwards: list[Json], svc: ServiceView, match: Matching,
                        available: set[tuple[str, str]]) -> list[Drift]:
    drifts = []
    ours = {(str(f["zone_id"]), f["public_ip"], f["protocol"], f["public_ports"]): f
            for f in svc.port_forwards}
    zone_of = {ip["address"]: str(ip["zone_id"]) for ip in svc.public_ips}
    for forward in forwards:
        network = match.networks.get(forward["networkid"])
        zone = next(iter(match.zones.values()), "") if network is None else \
            next(str(n["zone_id"]) for n in svc.networks if n["id"] == network)
        zone = zone_of.get(forward["ipaddress"], zone)
        ports = _ranged(forward["publicport"], forward.get("publicendport"))
        key = (zone, forward["ipaddress"], forward["protocol"].lower(), ports)
        wanted = {"network_id": network, "private_ip": forward.get("vmguestip", ""),
                  "private_port": _ranged(forward["privateport"],
                                          forward.get("privateendport"))}
        mine = ours.pop(key, None)
        text = f"{forward['ipaddress']} {key[2]}/{ports}"
        detail = f"to {wanted['private_ip']}:{wanted['private_port']}"
        if mine is not None:
            have = {"network_id": mine["network_id"], "private_ip": mine["private_ip"],
                    "private_port": mine["private_ports"]}
            if have == wanted:
                continue
            detail += f" (service: {have['private_ip']}:{have['private_port']})"
        where = CLOUDSTACK_ONLY if mine is None else DIFFERENT
        if network is None or (zone, forward["ipaddress"]) not in available:
            why = "its network is not in the service" if network is None else \
                "its public IP cannot be added"
            drifts.append(Drift("port-forward", text, where, detail,
                                _cannot(why, RESTART_NETWORK)))
            continue
        path = f"{_ip_path(zone, forward['ipaddress'])}/port-forwards/{key[2]}/{ports}"
        drifts.append(Drift("port-forward", text, where, detail,
                            "set it in the service (as add-port-forward would)",
                            (Call("PUT", path, wanted, PHASE_ADD_RULES),)))
    for (zone, address, protocol, ports), mine in ours.items():
        path = f"{_ip_path(zone, address)}/port-forwards/{protocol}/{ports}"
        drifts.append(Drift("port-forward", f"{address} {protocol}/{ports}", SERVICE_ONLY,
                            f"to {mine['private_ip']}:{mine['private_ports']}",
                            "delete it from the service (as delete-port-forward would)",
                            (Call("DELETE", path, phase=PHASE_DROP_RULES),)))
    return drifts


# --- firewall ---------------------------------------------------------------------------

RuleKey = tuple[str, str, object, object, object, object, str, str, str]


def _cidr_text(cidrs: object) -> str:
    items = cidrs.split(",") if isinstance(cidrs, str) else \
        list(cidrs) if isinstance(cidrs, list) else []
    return ",".join(sorted(str(c).strip() for c in items if str(c).strip()))


def _cs_rule_key(rule: Json) -> RuleKey:
    return (str(rule.get("traffictype", "ingress")).lower(), str(rule["protocol"]).lower(),
            rule.get("startport"), rule.get("endport"), rule.get("icmptype"),
            rule.get("icmpcode"), rule.get("ipaddress") or "",
            _cidr_text(rule.get("cidrlist")), _cidr_text(rule.get("destcidrlist")))


def _service_rule_key(rule: Json) -> RuleKey:
    return (rule["type"], str(rule["protocol"]).lower(), rule.get("portStart"),
            rule.get("portEnd"), rule.get("icmpType"), rule.get("icmpCode"),
            rule.get("publicIp") or "", _cidr_text(rule.get("sourceCidrs")),
            _cidr_text(rule.get("destCidrs")))


def describe_rule(key: RuleKey) -> str:
    direction, protocol, start, end, icmp_type, icmp_code, public_ip, source, dest = key
    text = f"{direction} {protocol}"
    if start is not None:
        text += f"/{_ranged(start, end)}"
    if icmp_type is not None:
        text += f" icmp {icmp_type}/{icmp_code}"
    if public_ip:
        text += f" to {public_ip}"
    if source:
        text += f" from {source}"
    if dest:
        text += f" dest {dest}"
    return text


def _firewall_drift(rules: list[Json], svc: ServiceView, match: Matching) -> list[Drift]:
    drifts = []
    wanted: dict[str, list[RuleKey]] = {}
    for rule in rules:
        network = match.networks.get(rule["networkid"])
        if network is not None:
            wanted.setdefault(network, []).append(_cs_rule_key(rule))
    for network_id, firewall in svc.firewalls.items():
        want = wanted.get(network_id, [])
        have = [(_service_rule_key(rule), rule) for rule in firewall.get("rules", [])]
        kept = [rule for key, rule in have if key in want]
        stale = [key for key, _rule in have if key not in want]
        body = {"default_egress_allow": firewall["default_egress_allow"],
                "cidr": firewall["cidr"], "rules": kept}
        call = Call("PUT", f"/v1/networks/{_q(network_id)}/firewall", body, PHASE_DROP_RULES)
        for key in stale:
            drifts.append(Drift("firewall-rule", f"network {network_id}: {describe_rule(key)}",
                                SERVICE_ONLY, "", "remove it from the service's firewall "
                                "(as the next apply-fw-rules would)", (call,)))
        have_keys = [key for key, _rule in have]
        for key in want:
            if key not in have_keys:
                drifts.append(Drift(
                    "firewall-rule", f"network {network_id}: {describe_rule(key)}",
                    CLOUDSTACK_ONLY, "", _cannot(NO_ID.format(what="rules"),
                                                 RESTART_NETWORK)))
    return drifts


# --- helpers ----------------------------------------------------------------------------


def _zone(match: Matching, uuid: str) -> str:
    """The service's id of a CloudStack zone; its UUID when unmatched (matches nothing)."""
    return match.zones.get(uuid) or str(uuid)


def _cannot(reason: str, remedy: str) -> str:
    return f"cannot repair: {reason} — {remedy}"


def _differences(pairs: Iterable[tuple[str, object, object]]) -> list[str]:
    return [f"{name} {_shown(theirs)} in CloudStack, {_shown(ours)} in the service"
            for name, theirs, ours in pairs if theirs != ours]


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value in (None, "") else str(value)


def _q(text: object) -> str:
    return quote(str(text), safe="")
