"""Request bodies of the public-IP, NAT, firewall, ACL and load-balancer API, as specs.

Pure functions: a body goes in, a frozen spec or a one-line BadRequest naming the field
comes out. The rule bodies are CloudStack's own objects (camelCase, numbers as JSON
numbers or numeric strings, flags as booleans or "true"/"false"), so the plugin can pass
them through untouched. Every tenant-controlled string is checked here before it can
reach an nft or HAProxy file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Hashable, Iterable
from typing import Final

from provider_service import nat, policy
from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.errors import BadRequest
from provider_service.models.rules import (
    ACL_ACTIONS,
    DIRECTIONS,
    FIREWALL_PROTOCOLS,
    LB_ALGORITHMS,
    NAT_PROTOCOLS,
)

MAX_RULE_ID: Final = 2**63 - 1  # CloudStack ids are Java longs
MAX_ACL_NUMBER: Final = 2**31 - 1
MAX_NAME_LENGTH: Final = 255
# As CloudStack stores a public range's VLAN: 'vlan://101', '101', 'untagged', ...
# Applied with fullmatch: '$' would also match before a trailing newline.
_VLAN_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:/._-]{0,31}")
_SIGNED_RE: Final = re.compile(r" *-?[0-9]{1,10} *")
_show = v.show


# --- field parsers ---------------------------------------------------------------------


def parse_ipv4(value: object, field: str) -> str:
    return str(v.parse_ip(value, field, version=4))


def parse_vlan(value: object, field: str) -> str:
    text = v.require_str(value, field)
    if not _VLAN_RE.fullmatch(text):
        raise BadRequest(f"{field}: expected a VLAN like 'vlan://101', '101' or 'untagged', "
                         f"got {_show(value)}")
    return text


def parse_public_cidr(value: object, field: str) -> ipaddress.IPv4Network:
    """CloudStack's public_cidr ('203.0.113.5/24') → its range (203.0.113.0/24)."""
    if isinstance(value, str) and "/" not in value:
        raise BadRequest(f"{field}: expected address/prefix like '203.0.113.5/24', "
                         f"got {_show(value)}")
    return v.parse_interface_address(value, field).network


def parse_signed_int(value: object, field: str, low: int, high: int) -> int:
    """Like validation.parse_int, but '-1' as a string too (CloudStack's ICMP "any")."""
    if isinstance(value, str) and _SIGNED_RE.fullmatch(value):
        value = int(value)
    return v.parse_int(value, field, low, high)


def parse_rule_id(value: object, field: str) -> int:
    return v.parse_int(value, field, 1, MAX_RULE_ID)


def parse_port(value: object, field: str) -> int:
    return v.parse_int(value, field, 1, 65535)


def parse_icmp(value: object, field: str) -> int:
    return parse_signed_int(value, field, -1, 255)


def parse_cidr_list(value: object, field: str) -> str:
    """A JSON list (or comma-joined string) of CIDRs → normalised, de-duplicated, joined.

    Host bits are allowed ('10.1.1.5/24' means 10.1.1.0/24, as CloudStack reads it).
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise BadRequest(f"{field}: expected a list of CIDRs, got {_show(value)}")
    cidrs: list[str] = []
    for item in items:
        text = v.require_str(item, field).strip()
        cidr = str(v.parse_cidr(text, field, strict=False))
        if cidr not in cidrs:
            cidrs.append(cidr)
    return ",".join(cidrs)


def parse_text(value: object, field: str) -> str:
    """Tenant text (an LB name): printable, 1-255 characters, no control characters."""
    text = v.require_str(value, field)
    if not 1 <= len(text) <= MAX_NAME_LENGTH:
        raise BadRequest(f"{field}: use 1-{MAX_NAME_LENGTH} characters")
    if not text.isprintable():
        raise BadRequest(f"{field}: control characters are not allowed: {_show(value)}")
    return text


def parse_acl_protocol(value: object, field: str) -> str:
    """tcp, udp, icmp, all, or an IP protocol number 0-255 (CloudStack allows both)."""
    if (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and re.fullmatch(r" *[0-9]{1,3} *", value)
    ):
        return str(v.parse_int(value, field, 0, 255))
    return v.parse_choice(value, field, FIREWALL_PROTOCOLS)


def _choice(choices: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(value: object, field: str) -> str:
        return v.parse_choice(value, field, choices)

    return parse


# --- public IPs, static NAT, port forwards ---------------------------------------------

PUBLIC_IP_FIELDS = ("network_id", "vpc_id", "cidr", "gateway", "vlan", "source_nat")
STATIC_NAT_FIELDS = ("network_id", "private_ip")
PORT_FORWARD_FIELDS = ("network_id", "private_ip", "private_port")


def parse_public_ip(zone_id: str, address: str, body: Body) -> nat.PublicIpSpec:
    ip = v.parse_ip(address, "address", version=4)
    network_id = body.get("network_id", v.parse_id, None)
    vpc_id = body.get("vpc_id", v.parse_id, None)
    if (network_id is None) == (vpc_id is None):
        raise BadRequest("network_id: give exactly one of network_id and vpc_id")
    public_range = body.get("cidr", parse_public_cidr)
    if ip not in public_range:
        raise BadRequest(f"cidr: {ip} is outside {public_range}")
    gateway = body.get("gateway", lambda x, f: v.parse_ip(x, f, version=4))
    v.gateway_in_cidr(gateway, public_range, "gateway")
    v.gateway_in_cidr(ip, public_range, "address")
    if ip == gateway:
        raise BadRequest(f"address: {ip} is the gateway of {public_range}")
    return nat.PublicIpSpec(
        zone_id=v.parse_id(zone_id, "zone_id"),
        address=str(ip),
        cidr=str(public_range),
        gateway=str(gateway),
        vlan=body.get("vlan", parse_vlan, ""),
        source_nat=body.get("source_nat", v.parse_bool, False),
        network_id=network_id,
        vpc_id=vpc_id,
    )


def parse_static_nat(zone_id: str, address: str, body: Body) -> nat.StaticNatSpec:
    return nat.StaticNatSpec(
        zone_id=v.parse_id(zone_id, "zone_id"),
        address=parse_ipv4(address, "address"),
        network_id=body.get("network_id", v.parse_id),
        private_ip=body.get("private_ip", parse_ipv4),
    )


def parse_port_forward(
    zone_id: str, address: str, protocol: str, public_ports: str, body: Body
) -> nat.PortForwardSpec:
    public = v.parse_port_range(public_ports, "public_ports")
    private = body.get("private_port", v.parse_port_range)
    if private[1] - private[0] != public[1] - public[0]:
        raise BadRequest(f"private_port: {nat.ranged(private)} is not as long as the public "
                         f"range {nat.ranged(public)}")
    return nat.PortForwardSpec(
        zone_id=v.parse_id(zone_id, "zone_id"),
        address=parse_ipv4(address, "address"),
        protocol=parse_nat_protocol(protocol, "protocol"),
        public_ports=public,
        network_id=body.get("network_id", v.parse_id),
        private_ip=body.get("private_ip", parse_ipv4),
        private_ports=private,
    )


def parse_nat_protocol(value: object, field: str) -> str:
    return v.parse_choice(value, field, NAT_PROTOCOLS)


# --- firewall, ACL, load balancers ----------------------------------------------------

FIREWALL_FIELDS = ("default_egress_allow", "cidr", "rules")
_FIREWALL_RULE_FIELDS = ("id", "type", "protocol", "portStart", "portEnd", "icmpType",
                         "icmpCode", "publicIp", "sourceCidrs", "destCidrs")
RULE_LIST_FIELDS = ("rules",)
_ACL_ITEM_FIELDS = ("number", "action", "trafficType", "protocol", "portStart", "portEnd",
                    "icmpType", "icmpCode", "sourceCidrs")
_LB_RULE_FIELDS = ("id", "name", "publicIp", "publicPort", "privatePort", "protocol",
                   "algorithm", "revoke", "backends")
_LB_BACKEND_FIELDS = ("ip", "port", "revoked")

Ports = tuple[int | None, int | None, int | None, int | None]


def parse_firewall(network_id: str, body: Body) -> policy.FirewallSpec:
    rules = tuple(_firewall_rule(item, f"rules[{index}]")
                  for index, item in enumerate(_rule_list(body)))
    _unique(enumerate(rule.rule_id for rule in rules), "id")
    cidr = body.get("cidr", lambda x, f: v.parse_cidr(x, f, version=4), None)
    return policy.FirewallSpec(
        network_id=v.parse_id(network_id, "network_id"),
        default_egress_allow=body.get("default_egress_allow", v.parse_bool),
        cidr=None if cidr is None else str(cidr),
        rules=rules,
    )


def _firewall_rule(item: object, where: str) -> policy.FirewallRuleSpec:
    rule = Body.nested(item, _FIREWALL_RULE_FIELDS, where)
    direction = rule.get("type", _choice(DIRECTIONS))
    protocol = rule.get("protocol", _choice(FIREWALL_PROTOCOLS))
    # Whether an ingress rule needs a public IP depends on the network's mode (NATTED:
    # one; ROUTED: none, NEE sends ""): policy.apply_firewall decides, knowing it.
    public_ip = rule.get("publicIp", parse_ipv4, None)
    if direction == "egress" and public_ip is not None:
        raise BadRequest(f"{where}.publicIp: egress rules take none")
    port_start, port_end, icmp_type, icmp_code = _ports(rule, protocol, where)
    return policy.FirewallRuleSpec(
        rule_id=rule.get("id", parse_rule_id), direction=direction, protocol=protocol,
        port_start=port_start, port_end=port_end, icmp_type=icmp_type, icmp_code=icmp_code,
        public_ip=public_ip,
        source_cidrs=rule.get("sourceCidrs", parse_cidr_list, ""),
        dest_cidrs=rule.get("destCidrs", parse_cidr_list, ""),
    )


def parse_acl(network_id: str, body: Body) -> policy.AclSpec:
    items = tuple(_acl_item(item, f"rules[{index}]")
                  for index, item in enumerate(_rule_list(body)))
    _unique(enumerate(item.number for item in items), "number")
    return policy.AclSpec(
        network_id=v.parse_id(network_id, "network_id"),
        items=tuple(sorted(items, key=lambda item: item.number)),
    )


def _acl_item(item: object, where: str) -> policy.AclItemSpec:
    acl = Body.nested(item, _ACL_ITEM_FIELDS, where)
    protocol = acl.get("protocol", parse_acl_protocol)
    port_start, port_end, icmp_type, icmp_code = _ports(acl, protocol, where)
    return policy.AclItemSpec(
        number=acl.get("number", lambda x, f: v.parse_int(x, f, 1, MAX_ACL_NUMBER)),
        action=acl.get("action", _choice(ACL_ACTIONS)),
        direction=acl.get("trafficType", _choice(DIRECTIONS)),
        protocol=protocol, port_start=port_start, port_end=port_end,
        icmp_type=icmp_type, icmp_code=icmp_code,
        source_cidrs=acl.get("sourceCidrs", parse_cidr_list, ""),
    )


def _ports(rule: Body, protocol: str, where: str) -> Ports:
    """portStart/portEnd for tcp and udp only, icmpType/icmpCode for icmp only."""
    port_start = rule.get("portStart", parse_port, None)
    port_end = rule.get("portEnd", parse_port, None)
    icmp_type = rule.get("icmpType", parse_icmp, None)
    icmp_code = rule.get("icmpCode", parse_icmp, None)
    if protocol not in ("tcp", "udp") and (port_start, port_end) != (None, None):
        raise BadRequest(f"{where}.portStart: ports apply to tcp and udp only, not {protocol}")
    if protocol != "icmp" and (icmp_type, icmp_code) != (None, None):
        raise BadRequest(f"{where}.icmpType: ICMP type and code apply to icmp only")
    if port_start is None and port_end is not None:
        raise BadRequest(f"{where}.portEnd: given without portStart")
    if port_start is not None and port_end is None:
        port_end = port_start
    if port_start is not None and port_end is not None and port_start > port_end:
        raise BadRequest(f"{where}.portEnd: {port_end} is below portStart {port_start}")
    return port_start, port_end, icmp_type, icmp_code


def parse_load_balancers(network_id: str, body: Body) -> policy.LbSpec:
    # CloudStack sends revoked rules and members too; they are what must go away.
    kept = [(index, rule) for index, item in enumerate(_rule_list(body))
            if (rule := _lb_rule(item, f"rules[{index}]")) is not None]
    _unique(((index, rule.rule_id) for index, rule in kept), "id")
    _unique(((index, f"{rule.public_ip} {rule.protocol}/{rule.public_port}")
             for index, rule in kept), "publicPort")
    return policy.LbSpec(network_id=v.parse_id(network_id, "network_id"),
                         rules=tuple(rule for _, rule in kept))


def _lb_rule(item: object, where: str) -> policy.LbRuleSpec | None:
    rule = Body.nested(item, _LB_RULE_FIELDS, where)
    if rule.get("revoke", v.parse_bool, False):
        return None
    members = [_lb_backend(member, f"{where}.backends[{index}]")
               for index, member in enumerate(rule.items("backends"))]
    # A member listed twice means the same thing once; only contradictions are errors.
    backends = tuple(dict.fromkeys(member for member in members if member is not None))
    return policy.LbRuleSpec(
        rule_id=rule.get("id", parse_rule_id),
        name=rule.get("name", parse_text),
        public_ip=rule.get("publicIp", parse_ipv4),
        public_port=rule.get("publicPort", parse_port),
        private_port=rule.get("privatePort", parse_port),
        protocol=rule.get("protocol", parse_nat_protocol),
        algorithm=rule.get("algorithm", _choice(LB_ALGORITHMS)),
        backends=backends,
    )


def _lb_backend(item: object, where: str) -> policy.LbBackendSpec | None:
    member = Body.nested(item, _LB_BACKEND_FIELDS, where)
    if member.get("revoked", v.parse_bool, False):
        return None
    return policy.LbBackendSpec(ip=member.get("ip", parse_ipv4),
                                port=member.get("port", parse_port))


def _rule_list(body: Body) -> list[object]:
    # Required, even when empty: a body that forgot it must not wipe the network's rules.
    if not body.has("rules"):
        raise BadRequest("rules: required (send [] to remove every rule)")
    return body.items("rules")


def _unique(keys: Iterable[tuple[int, Hashable]], field: str) -> None:
    """Keys are (index in the request, key): the error names the second occurrence."""
    seen: set[Hashable] = set()
    for index, key in keys:
        if key in seen:
            raise BadRequest(f"rules[{index}].{field}: {key} appears twice")
        seen.add(key)
