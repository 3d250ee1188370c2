"""`vxgate cloudstack register`: the CloudStack objects vxgate needs, created once.

Two halves. `build_plan` turns the operator's options into the objects CloudStack must
hold (pure data: the extension, its registration on a physical network, the offerings).
`reconcile` looks each one up, then creates or updates only what differs, so a second
run changes nothing. It reaches CloudStack only through the `Api` protocol; the real
implementation, `CloudStackApi`, is the one place that uses the `cs` client.

Parameter names and behaviour follow protocol.md §1.1, §1.2, §7, §8 and CloudStack 4.23's
sources (CreateExtensionCmd, RegisterExtensionCmd, UpdateRegisteredExtensionCmd,
NetworkOfferingBaseCmd, ExtensionsManagerImpl).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol
from urllib.parse import quote

from plugin.vxgate_extension import MODE_KEY, TOKEN_KEY, URL_KEY

EXTENSION_TYPE = "NetworkOrchestrator"
RESOURCE_TYPE = "PhysicalNetwork"
ENABLED = "Enabled"
DETAIL_SERVICES = "network.services"
DETAIL_CAPABILITIES = "network.service.capabilities"
DETAIL_ISOLATION = "network.isolation.method"
# Makes CloudStack pick the extension's guest guru, so implement-network's
# `network.broadcast_uri` = vxlan://<VNI> answer is applied (protocol.md §4.2).
ISOLATION_METHOD = "NetworkExtension"

# What the SoftGates deliver (DESIGN.md). Not Vpn, SecurityGroup or internal LB.
SERVICES = ("SourceNat", "StaticNat", "PortForwarding", "Firewall", "Lb", "NetworkACL",
            "Dhcp", "Dns", "UserData", "Gateway", "CustomAction")
# Only what vxgate honours: CloudStack refuses offerings and rules that ask for more.
# No RedundantRouter (the SoftGate pair is ours, not CloudStack's), no stickiness (apply-lb-rules
# never carries it, protocol.md §3 #28), no Internal scheme. DhcpAccrossMultipleSubnets=false
# spares a config-dhcp-subnet spawn on every NIC prepare (protocol.md §3 #17).
CAPABILITIES: dict[str, dict[str, str]] = {
    "SourceNat": {"SupportedSourceNatTypes": "peraccount"},
    "Lb": {
        "SupportedLBAlgorithms": "roundrobin,leastconn,source",
        "SupportedProtocols": "tcp,udp",
        "LbSchemes": "Public",
    },
    "Firewall": {
        "SupportedProtocols": "tcp,udp,icmp",
        "SupportedEgressProtocols": "tcp,udp,icmp,all",
        "SupportedTrafficDirection": "ingress,egress",
    },
    "PortForwarding": {"SupportedProtocols": "tcp,udp"},
    "NetworkACL": {"SupportedProtocols": "tcp,udp,icmp,all"},
    "Dhcp": {"DhcpAccrossMultipleSubnets": "false"},
}

NATTED_SERVICES = tuple(s for s in SERVICES if s != "NetworkACL")
# ROUTED mode: guest CIDRs are announced upstream, so nothing is translated.
ROUTED_SERVICES = ("Firewall", "Dhcp", "Dns", "UserData", "Gateway", "CustomAction")
VPC_TIER_SERVICES = tuple(s for s in SERVICES if s != "Firewall")  # ACLs instead
PER_ACCOUNT_SNAT = (("SourceNat", "SupportedSourceNatTypes", "peraccount"),)

Params = Mapping[str, object]
Record = dict[str, Any]


class RegistrationError(Exception):
    """Registration cannot go on; the message is one line for the operator."""


class CloudStackError(RegistrationError):
    """CloudStack refused a call or could not be reached."""


class Api(Protocol):
    """The two ways reconcile talks to CloudStack."""

    def call(self, command: str, params: Params) -> Record:
        """Run a command (async ones to completion); the answer's object."""

    def list_all(self, command: str, params: Params) -> list[Record]:
        """Run a list command over all pages."""


# --- the plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    physical_network: str
    service_url: str
    token: str = field(repr=False)  # no secret in a repr, a log line or a traceback
    zone: str | None = None
    name: str = "vxgate"
    entry_point: str = "vxgate_extension.py"
    egress_default_allow: bool = True


@dataclass(frozen=True)
class CustomActionPlan:
    """A network custom action (addCustomAction, resource type Network): CloudStack
    offers it on the extension's networks and sends it as `custom-action`."""

    name: str
    description: str
    parameters: tuple[tuple[str, str], ...]  # (name, type), all required

    def create_params(self, extension_id: str) -> dict[str, object]:
        return {
            "extensionid": extension_id, "name": self.name, "description": self.description,
            "resourcetype": "Network", "enabled": "true",
            "parameters": [{"name": name, "type": kind, "required": "true"}
                           for name, kind in self.parameters],
        }


# Direct connect (provider_service/direct_connect.py): a VLAN on a VTEP leaf's port
# joins the network's L2 segment.
_PORT_VLAN = (("device", "STRING"), ("port", "STRING"), ("vlan", "NUMBER"))
CUSTOM_ACTIONS = (
    CustomActionPlan("attach-vlan", "Join a VLAN on a VTEP leaf's port to this network "
                     "(bare-metal direct connect)", _PORT_VLAN),
    CustomActionPlan("detach-vlan", "Take a VLAN on a VTEP leaf's port off this network",
                     _PORT_VLAN),
)


@dataclass(frozen=True)
class ExtensionPlan:
    name: str
    path: str
    description: str
    details: dict[str, str]
    # physical-network-extension-details of its registration: service URL, token, mode.
    registration_details: dict[str, str] = field(repr=False)
    custom_actions: tuple[CustomActionPlan, ...] = CUSTOM_ACTIONS

    def create_params(self) -> dict[str, object]:
        return {
            "name": self.name, "type": EXTENSION_TYPE, "path": self.path,
            "description": self.description, "state": ENABLED,
            "details": detail_list(self.details),
        }


@dataclass(frozen=True)
class OfferingPlan:
    kind: Literal["network", "VPC"]
    name: str
    displaytext: str
    provider: str
    services: tuple[str, ...]
    networkmode: str
    forvpc: bool = False
    egress_default_allow: bool | None = None
    capabilities: tuple[tuple[str, str, str], ...] = ()

    def create_params(self) -> dict[str, object]:
        params: dict[str, object] = {"name": self.name, "displaytext": self.displaytext}
        if self.kind == "network":
            params.update(guestiptype="Isolated", traffictype="GUEST")
        params.update(
            networkmode=self.networkmode,
            supportedservices=",".join(self.services),
            serviceproviderlist=[{"service": s, "provider": self.provider} for s in self.services],
        )
        if self.capabilities:
            params["servicecapabilitylist"] = [
                {"service": s, "capabilitytype": c, "capabilityvalue": v}
                for s, c, v in self.capabilities
            ]
        if self.forvpc:
            params["forvpc"] = "true"
        if self.egress_default_allow is not None:
            params["egressdefaultpolicy"] = "true" if self.egress_default_allow else "false"
        return params


@dataclass(frozen=True)
class Plan:
    # The first for NATTED networks and VPCs, the second for ROUTED networks (see
    # build_plan); both on the same physical network, with the same entry-point.
    extensions: tuple[ExtensionPlan, ...]
    physical_network: str
    zone: str | None
    offerings: tuple[OfferingPlan, ...]


def build_plan(options: Options) -> Plan:
    """NetworkExtensionElement tells the extension nothing of a network's mode (protocol.md
    §2.3), so ROUTED networks get an extension of their own, `<name>-routed`, whose
    registration says `vxgate.network_mode: routed`; its offering names it as provider."""
    name, routed = extension_names(options.name)
    connection = {URL_KEY: options.service_url, TOKEN_KEY: options.token}
    extensions = (
        extension_plan(name, options.entry_point, SERVICES, connection),
        extension_plan(routed, options.entry_point, ROUTED_SERVICES,
                       {**connection, MODE_KEY: "routed"}),
    )
    egress = options.egress_default_allow
    offerings = (
        OfferingPlan("network", f"{name}-isolated-natted",
                     f"{name} isolated network, source NAT", name, NATTED_SERVICES,
                     "NATTED", egress_default_allow=egress, capabilities=PER_ACCOUNT_SNAT),
        OfferingPlan("network", f"{name}-isolated-routed",
                     f"{name} isolated network, routed (no NAT)", routed, ROUTED_SERVICES,
                     "ROUTED", egress_default_allow=egress),
        OfferingPlan("network", f"{name}-vpc-tier", f"{name} VPC tier", name,
                     VPC_TIER_SERVICES, "NATTED", forvpc=True, capabilities=PER_ACCOUNT_SNAT),
        # No capability list: VPC offerings take only a few VPC-level capabilities, and
        # source NAT is per VPC anyway.
        OfferingPlan("VPC", f"{name}-vpc", f"{name} VPC", name, VPC_TIER_SERVICES, "NATTED"),
    )
    return Plan(extensions=extensions, physical_network=options.physical_network,
                zone=options.zone, offerings=offerings)


def extension_names(name: str = "vxgate") -> tuple[str, str]:
    """The extension for NATTED networks and VPCs, and the one for ROUTED networks: the
    entry-point is installed under both on every management server."""
    return name, f"{name}-routed"


def extension_plan(name: str, entry_point: str, services: tuple[str, ...],
                   registration_details: dict[str, str]) -> ExtensionPlan:
    return ExtensionPlan(
        name=name,
        path=entry_point,
        description="vxgate: EVPN network provider (BGP-EVPN VXLAN, SoftGate gateways)",
        details={
            DETAIL_SERVICES: ",".join(services),
            DETAIL_CAPABILITIES: json.dumps(
                {s: c for s, c in CAPABILITIES.items() if s in services},
                separators=(",", ":")),
            DETAIL_ISOLATION: ISOLATION_METHOD,
        },
        registration_details=registration_details,
    )


def detail_list(details: Mapping[str, str]) -> list[dict[str, str]]:
    # CloudStack's convertDetailsToMap reads details[i].<key>=<value>, one map per index;
    # the cs client writes [{key: value}, ...] exactly that way.
    return [{key: value} for key, value in details.items()]


# --- reconcile -----------------------------------------------------------------------


Say = Callable[[str], None]
# (extension name, the token its registration holds now or "") -> the token it must hold:
# the service's extension token for that name (the same one while it is still valid).
TokenIssuer = Callable[[str, str], str]


@dataclass(frozen=True)
class PhysicalNetwork:
    id: str
    name: str


def reconcile(api: Api, plan: Plan, say: Say, warn: Say,
              tokens: TokenIssuer | None = None) -> None:
    """Make CloudStack hold the plan; one line per step through `say`. With `tokens`,
    each registration gets its extension's own token instead of the plan's."""
    # Resolved first: a wrong --physical-network must not leave a half-done registration.
    network = find_physical_network(api, plan.physical_network, plan.zone)
    # Tokens too, before anything changes: an unreachable service stops the run here.
    extensions = plan.extensions if tokens is None else \
        tuple(with_extension_token(api, wanted, network, tokens) for wanted in plan.extensions)
    for wanted in extensions:
        extension = ensure_extension(api, wanted, say, warn)
        ensure_registration(api, extension, network, wanted.registration_details, say)
        ensure_provider(api, wanted.name, network, say)
        for action in wanted.custom_actions:
            ensure_custom_action(api, extension, action, say)
    for offering in plan.offerings:
        ensure_offering(api, offering, say, warn)


def with_extension_token(api: Api, plan: ExtensionPlan, network: PhysicalNetwork,
                         tokens: TokenIssuer) -> ExtensionPlan:
    """The plan with the token the service issued for this extension; the token the
    registration holds now is offered for keeping, so a re-run changes nothing."""
    with _about(f"extension {plan.name}"):
        current = _named(api.list_all("listExtensions", {"name": plan.name}), plan.name)
    resources = (current or {}).get("resources") or []
    registration: Mapping[str, Any] = next(
        (r for r in resources if r.get("type") == RESOURCE_TYPE and r.get("id") == network.id),
        {})
    held = str((registration.get("details") or {}).get(TOKEN_KEY) or "")
    token = tokens(plan.name, held)
    return replace(plan, registration_details={**plan.registration_details, TOKEN_KEY: token})


def find_physical_network(api: Api, wanted: str, zone: str | None) -> PhysicalNetwork:
    params: dict[str, object] = {}
    if zone:
        params["zoneid"] = find_zone(api, zone)
    with _about("looking up the physical network"):
        found = [pn for pn in api.list_all("listPhysicalNetworks", params)
                 if wanted in (pn.get("id"), pn.get("name"))]
    where = f" in zone {zone}" if zone else ""
    if not found:
        raise RegistrationError(f"no physical network {wanted!r}{where}")
    if len(found) > 1:
        raise RegistrationError(
            f"{len(found)} physical networks are named {wanted!r}{where}: pass its id or --zone")
    return PhysicalNetwork(id=str(found[0]["id"]), name=str(found[0].get("name", wanted)))


def find_zone(api: Api, wanted: str) -> str:
    with _about("looking up the zone"):
        found = [z for z in api.list_all("listZones", {}) if wanted in (z.get("id"), z.get("name"))]
    if len(found) != 1:
        raise RegistrationError(f"no zone {wanted!r}" if not found else
                                f"{len(found)} zones are named {wanted!r}: pass its id")
    return str(found[0]["id"])


def ensure_extension(api: Api, plan: ExtensionPlan, say: Say, warn: Say) -> Record:
    subject = f"extension {plan.name}"
    with _about(subject):
        current = _named(api.list_all("listExtensions", {"name": plan.name}), plan.name)
        if current is None:
            current = api.call("createExtension", plan.create_params())
            say(f"created {subject} (entry-point {current.get('path') or plan.path})")
        elif current.get("type") != EXTENSION_TYPE:
            raise RegistrationError(f"{subject} exists with type {current.get('type')}, "
                                    f"not {EXTENSION_TYPE}: choose another --name")
        else:
            update, changed = extension_update(plan, current)
            if update:
                # Keep what the listing showed (resources) should the answer be shorter.
                current = {**current, **api.call("updateExtension",
                                                  {"id": current["id"], **update})}
                say(f"updated {subject}: {', '.join(changed)}")
            else:
                say(f"unchanged {subject}")
    _check_path(current, plan, warn)
    return current


def extension_update(plan: ExtensionPlan, current: Mapping[str, Any]) \
        -> tuple[dict[str, object], list[str]]:
    """updateExtension's parameters (besides id) and what they change; empty if nothing."""
    update: dict[str, object] = {}
    details: Mapping[str, str] = current.get("details") or {}
    changed = extension_drift(plan.details, details)
    if changed:
        # Sent whole, with the operator's own details kept (e.g. network.allocate.extension.ip).
        update["details"] = detail_list({**details, **plan.details})
    if current.get("state") != ENABLED:
        update["state"] = ENABLED
        changed.append(f"state {ENABLED}")
    return update, changed


def extension_drift(wanted: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Detail keys whose value differs in meaning (CSV order and JSON spacing don't count)."""
    return [key for key, value in wanted.items() if not _same_detail(key, value, current.get(key))]


def _same_detail(key: str, wanted: str, current: str | None) -> bool:
    if current is None:
        return False
    if key == DETAIL_SERVICES:
        return _csv(wanted) == _csv(current)
    if key == DETAIL_CAPABILITIES:
        try:
            return bool(json.loads(wanted) == json.loads(current))
        except ValueError:
            return False
    return wanted == current


def _csv(text: str) -> set[str]:
    return {part.strip() for part in text.split(",") if part.strip()}


def _check_path(extension: Mapping[str, Any], plan: ExtensionPlan, warn: Say) -> None:
    path = str(extension.get("path") or "")
    # createExtension keeps the path relative to <extensions dir>/<name>/ (protocol.md §1.1)
    # and answers with it absolute. Moving it means moving the file on every management
    # server first, so a different path is reported, never changed.
    if path and not path.endswith("/" + plan.path):
        warn(f"extension {plan.name} runs {path}, not {plan.path}; "
             "delete the extension and re-run to change its entry-point")
    elif path and extension.get("pathready") is False:
        # CloudStack re-checks every extension.path.state.check.interval (300 s by default).
        warn(f"CloudStack reports {path} not ready (yet): install the entry-point on every "
             "management server (docs/cloudstack-registration.md)")


def ensure_registration(api: Api, extension: Mapping[str, Any], network: PhysicalNetwork,
                        wanted: Mapping[str, str], say: Say) -> None:
    subject = f"registration of {extension['name']} on physical network {network.name}"
    current = next((r for r in extension.get("resources") or []
                    if r.get("type") == RESOURCE_TYPE and r.get("id") == network.id), None)
    triple = {"extensionid": extension["id"], "resourcetype": RESOURCE_TYPE,
              "resourceid": network.id}
    with _about(subject):
        if current is None:
            api.call("registerExtension", {**triple, "details": detail_list(wanted)})
            say(f"created {subject}")
            return
        details: Mapping[str, str] = current.get("details") or {}
        changed = [key for key, value in wanted.items() if details.get(key) != value]
        if not changed:
            say(f"unchanged {subject}")
            return
        # The update replaces the visible details (CloudStack keeps the hidden ones), so
        # whatever else the operator stored there is sent back unchanged.
        merged = {**details, **wanted}
        api.call("updateRegisteredExtension", {**triple, "details": detail_list(merged)})
        say(f"updated {subject}: {', '.join(changed)}")  # key names only, never values


def ensure_provider(api: Api, name: str, network: PhysicalNetwork, say: Say) -> None:
    subject = f"network service provider {name} on physical network {network.name}"
    with _about(subject):
        params = {"physicalnetworkid": network.id, "name": name}
        found = _named(api.list_all("listNetworkServiceProviders", params), name)
        if found is None:
            # registerExtension creates it; without it no offering can name the extension.
            raise RegistrationError(f"{subject} is missing: unregister the extension from "
                                    "the physical network and re-run")
        if found.get("state") == ENABLED:
            say(f"unchanged {subject}")
            return
        api.call("updateNetworkServiceProvider", {"id": found["id"], "state": ENABLED})
        say(f"updated {subject}: state {ENABLED}")


def ensure_custom_action(api: Api, extension: Mapping[str, Any], plan: CustomActionPlan,
                         say: Say) -> None:
    subject = f"custom action {plan.name} of {extension['name']}"
    with _about(subject):
        found = _named(api.list_all("listCustomActions", {"extensionid": extension["id"],
                                                          "name": plan.name}), plan.name)
        if found is not None:
            say(f"unchanged {subject}")
            return
        api.call("addCustomAction", plan.create_params(str(extension["id"])))
    say(f"created {subject}")


def ensure_offering(api: Api, plan: OfferingPlan, say: Say, warn: Say) -> None:
    kind = "Network" if plan.kind == "network" else "VPC"
    subject = f"{plan.kind} offering {plan.name}"
    with _about(subject):
        current = _named(api.list_all(f"list{kind}Offerings", {"name": plan.name}), plan.name)
        created = current is None
        if current is None:
            current = api.call(f"create{kind}Offering", plan.create_params())
        else:
            drift = offering_drift(plan, current)
            if drift:
                warn(f"{subject} exists but differs from vxgate's ({'; '.join(drift)}); "
                     "CloudStack cannot change that in place: delete or rename it and re-run")
        # New offerings start Disabled; enabling is its own call (updateNetworkOffering).
        enable = current.get("state") != ENABLED
        if enable:
            api.call(f"update{kind}Offering", {"id": current["id"], "state": ENABLED})
    if created:
        say(f"created {subject}")
    else:
        say(f"updated {subject}: state {ENABLED}" if enable else f"unchanged {subject}")


def offering_drift(plan: OfferingPlan, current: Mapping[str, Any]) -> list[str]:
    """What an existing offering gets wrong that only a new offering can fix."""
    drift = []
    have = {str(s.get("name")): sorted(str(p.get("name")) for p in s.get("provider") or [])
            for s in current.get("service") or []}
    want = {s: [plan.provider.casefold()] for s in plan.services}
    # Provider names match case-insensitively in CloudStack (protocol.md §1.2).
    if {s: [p.casefold() for p in ps] for s, ps in have.items()} != want:
        drift.append(f"services/providers {_describe(have)}")
    mode = current.get("networkmode")
    if mode and str(mode).upper() != plan.networkmode:
        drift.append(f"network mode {mode}")
    egress = current.get("egressdefaultpolicy")
    if plan.egress_default_allow is not None and isinstance(egress, bool) \
            and egress != plan.egress_default_allow:
        drift.append(f"egress default {'allow' if egress else 'deny'}")
    return drift


def _describe(services: Mapping[str, list[str]]) -> str:
    return ",".join(f"{s}:{'/'.join(p) or '-'}" for s, p in sorted(services.items())) or "none"


def _named(records: Iterable[Record], name: str) -> Record | None:
    # CloudStack's name filters are not all exact; NetworkExtensionElement matches provider
    # names case-insensitively, so a case variant counts as the same object.
    return next((r for r in records if str(r.get("name", "")).casefold() == name.casefold()),
                None)


@contextmanager
def _about(subject: str) -> Iterator[None]:
    try:
        yield
    except CloudStackError as error:
        raise CloudStackError(f"{subject}: {error}") from None


# --- the one door to CloudStack ------------------------------------------------------


class CloudStackApi:
    """`Api` over the `cs` client; its errors become one-line CloudStackErrors."""

    def __init__(self, endpoint: str, api_key: str, secret_key: str, *,
                 secrets: Iterable[str] = (), timeout: int = 30, job_timeout: int = 600,
                 session: Any = None) -> None:
        # Imported here, not at the top: only this command needs cs (and requests).
        import cs

        self._cs = cs
        self._endpoint = endpoint
        self._secrets = (secret_key, api_key, *secrets)
        # POST keeps the parameters (the token among them) out of URLs, hence out of
        # access logs and out of requests' error messages.
        self._client = cs.CloudStack(
            endpoint=endpoint, key=api_key, secret=secret_key, method="post",
            timeout=timeout, job_timeout=job_timeout, fetch_result=True, session=session)

    def call(self, command: str, params: Params) -> Record:
        answer = self._request(command, params, fetch_list=False)
        return _object_of(answer) if isinstance(answer, dict) else {}

    def list_all(self, command: str, params: Params) -> list[Record]:
        answer = self._request(command, params, fetch_list=True)
        return [item for item in answer if isinstance(item, dict)] \
            if isinstance(answer, list) else []

    def _request(self, command: str, params: Params, *, fetch_list: bool) -> Any:
        try:
            return getattr(self._client, command)(fetch_list=fetch_list, **params)
        except self._cs.CloudStackApiException as error:
            message = f"{command}: {_api_error_text(error.error)}"
        except self._cs.CloudStackException as error:
            message = f"{command}: " + " ".join(str(a) for a in error.args if a)
        except OSError as error:  # requests' exceptions are OSErrors
            message = f"cannot reach CloudStack at {self._endpoint}: {_network_reason(error)}"
        raise CloudStackError(redact(message, self._secrets))


def _object_of(answer: dict[str, Any]) -> Record:
    # Single-object answers arrive wrapped once more: {"extension": {...}}.
    if len(answer) == 1:
        (inner,) = answer.values()
        if isinstance(inner, dict):
            return inner
    return answer


def _api_error_text(error: Any) -> str:
    if isinstance(error, dict):
        text = error.get("errortext") or "no error text"
        code = error.get("errorcode")
        return f"{text} (error {code})" if code else str(text)
    return str(error)


def _network_reason(error: OSError) -> str:
    # requests nests the cause several levels deep; the errno text is what helps.
    text = str(error)
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(certificate verify failed[^'\")]*)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip()
    return type(error).__name__


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its URL-encoded form) replaced by ***."""
    for secret in secrets:
        if len(secret) >= 4:
            for form in {secret, quote(secret, safe=""), quote(secret, safe="*")}:
                text = text.replace(form, "***")
    return text
