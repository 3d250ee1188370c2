"""`vxgate cloudstack audit` for the rule sets CloudStack sends whole: load balancers and
VPC tiers' network ACLs. Pure functions, called from audit.compare.

- load-balancer rule: the network + public IP + protocol + public port (the service
  allows one rule per public IP, protocol and port); algorithm, private port and members
  (matched by the VM's address on the network) are compared.
- network ACL item: the tier + its number (unique within a list); its action, direction,
  protocol, ports, ICMP type/code and source CIDRs are compared.

The service replaces a network's LBs or ACL with one PUT, so every repair of a network is
the same call carrying that network's whole corrected set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider_service.audit import (
    CLOUDSTACK_ONLY,
    DIFFERENT,
    NO_ID,
    PHASE_ADD_RULES,
    PHASE_DROP_RULES,
    RESTART_NETWORK,
    SERVICE_ONLY,
    Call,
    Drift,
    Matching,
    _cannot,
    _cidr_text,
    _q,
    _ranged,
)

Json = dict[str, Any]
LbKey = tuple[str, str, int]  # public IP, protocol, public port


# --- load balancers ---------------------------------------------------------------------


def _cs_lb_key(rule: Json) -> LbKey:
    return (rule.get("publicip", ""), str(rule.get("protocol") or "tcp").lower(),
            int(rule["publicport"]))


def _service_lb_key(rule: Json) -> LbKey:
    return (rule["publicIp"], str(rule["protocol"]).lower(), int(rule["publicPort"]))


def _cs_lb_wanted(rule: Json) -> Json:
    """What the service should hold of a CloudStack rule: algorithm, ports, members."""
    port = int(rule["privateport"])
    return {"algorithm": str(rule.get("algorithm", "")).lower(), "privatePort": port,
            "backends": sorted({ip: port for ip in rule.get("memberips", [])}.items())}


def _service_lb_have(rule: Json) -> Json:
    return {"algorithm": rule["algorithm"], "privatePort": int(rule["privatePort"]),
            "backends": sorted((b["ip"], int(b["port"])) for b in rule.get("backends", []))}


def _lb_text(wanted: Json) -> str:
    members = ",".join(ip for ip, _port in wanted["backends"]) or "no members"
    return f"{wanted['algorithm']} to :{wanted['privatePort']} ({members})"


def lb_drift(rules: list[Json], lbs: Mapping[str, Json], match: Matching) -> list[Drift]:
    """Drift of every matched network's load balancers (`lbs`: network id → GET body)."""
    drifts = []
    wanted: dict[str, dict[LbKey, Json]] = {}
    for rule in rules:
        network = match.networks.get(rule.get("networkid", ""))
        if network is not None:
            wanted.setdefault(network, {})[_cs_lb_key(rule)] = _cs_lb_wanted(rule)
    for network_id, answer in lbs.items():
        want = wanted.get(network_id, {})
        have = {_service_lb_key(rule): rule for rule in answer.get("rules", [])}
        kept = [_corrected(rule, want[key]) for key, rule in have.items() if key in want]
        call = Call("PUT", f"/v1/networks/{_q(network_id)}/load-balancers", {"rules": kept},
                    PHASE_DROP_RULES)
        for key, rule in have.items():
            text = f"network {network_id}: {key[0]} {key[1]}/{key[2]}"
            mine = _service_lb_have(rule)
            if key not in want:
                drifts.append(Drift("lb-rule", text, SERVICE_ONLY, _lb_text(mine),
                                    "remove it from the service (as the next "
                                    "apply-lb-rules would)", (call,)))
            elif want[key] != mine:
                drifts.append(Drift("lb-rule", text, DIFFERENT,
                                    f"{_lb_text(want[key])} (service: {_lb_text(mine)})",
                                    "set it in the service (as apply-lb-rules would)",
                                    (call,)))
        for key, theirs in want.items():
            if key not in have:
                drifts.append(Drift("lb-rule",
                                    f"network {network_id}: {key[0]} {key[1]}/{key[2]}",
                                    CLOUDSTACK_ONLY, _lb_text(theirs),
                                    _cannot(NO_ID.format(what="rules"), RESTART_NETWORK)))
    return drifts


def _corrected(rule: Json, wanted: Json) -> Json:
    """A service rule (its id and name kept) with CloudStack's algorithm and members."""
    return {"id": rule["id"], "name": rule["name"], "publicIp": rule["publicIp"],
            "publicPort": rule["publicPort"], "protocol": rule["protocol"],
            "algorithm": wanted["algorithm"], "privatePort": wanted["privatePort"],
            "backends": [{"ip": ip, "port": port} for ip, port in wanted["backends"]]}


# --- network ACLs -----------------------------------------------------------------------


def _number(value: object) -> int | None:
    return None if value in (None, "") else int(str(value))


def _cs_acl_item(item: Json) -> Json:
    """A CloudStack ACL item as the service's PUT takes it."""
    protocol = str(item.get("protocol") or "all").lower()
    answer: Json = {"number": int(item["number"]),
                    "action": str(item.get("action", "allow")).lower(),
                    "trafficType": str(item.get("traffictype", "ingress")).lower(),
                    "protocol": protocol, "portStart": None, "portEnd": None,
                    "icmpType": None, "icmpCode": None,
                    "sourceCidrs": _cidr_text(item.get("cidrlist")).split(",")
                    if _cidr_text(item.get("cidrlist")) else []}
    if protocol in ("tcp", "udp"):  # the service takes ports for these only
        answer.update(portStart=_number(item.get("startport")),
                      portEnd=_number(item.get("endport")))
    if protocol == "icmp":
        answer.update(icmpType=_number(item.get("icmptype")),
                      icmpCode=_number(item.get("icmpcode")))
    return answer


def _acl_compared(item: Json) -> tuple[object, ...]:
    return (item["action"], item["trafficType"], str(item["protocol"]).lower(),
            item.get("portStart"), item.get("portEnd"), item.get("icmpType"),
            item.get("icmpCode"), _cidr_text(item.get("sourceCidrs")))


def describe_acl_item(item: Json) -> str:
    text = f"{item['action']} {item['trafficType']} {item['protocol']}"
    if item.get("portStart") is not None:
        text += f"/{_ranged(item['portStart'], item.get('portEnd'))}"
    if item.get("icmpType") is not None:
        text += f" icmp {item['icmpType']}/{item.get('icmpCode')}"
    cidrs = _cidr_text(item.get("sourceCidrs"))
    return text + (f" from {cidrs}" if cidrs else "")


def acl_drift(tiers: Mapping[str, Json], items: list[Json], acls: Mapping[str, Json],
              match: Matching) -> list[Drift]:
    """Drift of every matched tier's ACL (`tiers`: CloudStack UUID → listNetworks entry;
    `acls`: the service's network id → GET body). The PUT needs no CloudStack ids, so
    every item is repairable."""
    drifts = []
    by_list: dict[str, list[Json]] = {}
    for item in items:
        by_list.setdefault(item.get("aclid", ""), []).append(_cs_acl_item(item))
    for uuid, tier in tiers.items():
        network_id = match.networks.get(uuid)
        if network_id is None or network_id not in acls or not tier.get("aclid"):
            continue
        want = {item["number"]: item for item in by_list.get(tier["aclid"], [])}
        have = {int(item["number"]): item for item in acls[network_id].get("rules", [])}
        call = Call("PUT", f"/v1/networks/{_q(network_id)}/acl",
                    {"rules": [want[n] for n in sorted(want)]}, PHASE_ADD_RULES)
        name = tier.get("aclname") or tier["aclid"]
        for number in sorted(set(want) | set(have)):
            key = f"network {network_id}: #{number}"
            theirs, mine = want.get(number), have.get(number)
            if mine is None and theirs is not None:
                drifts.append(Drift("acl-item", key, CLOUDSTACK_ONLY,
                                    f"{describe_acl_item(theirs)} (list {name})",
                                    "set the tier's ACL in the service (as "
                                    "apply-network-acl would)", (call,)))
            elif theirs is None and mine is not None:
                drifts.append(Drift("acl-item", key, SERVICE_ONLY, describe_acl_item(mine),
                                    "remove it from the service's ACL (as "
                                    "apply-network-acl would)", (call,)))
            elif theirs is not None and mine is not None and \
                    _acl_compared(theirs) != _acl_compared(mine):
                drifts.append(Drift("acl-item", key, DIFFERENT,
                                    f"{describe_acl_item(theirs)} (service: "
                                    f"{describe_acl_item(mine)})",
                                    "set the tier's ACL in the service (as "
                                    "apply-network-acl would)", (call,)))
    return drifts

