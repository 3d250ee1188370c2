"""The operator's commands: zones, hosts, physical networks, extensions, providers and
offerings (protocol.md §8), with the parameter names and checks of CloudStack 4.23."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from simulator.cloudstack.api import ApiError, ErrorCode, Params
from simulator.cloudstack.cloud import CloudStackSim
from simulator.cloudstack.commands import Commands, find
from simulator.cloudstack.model import Extension, Offering, Provider, Registration, new_uuid

commands = Commands()
PARAM_ERROR = ErrorCode.PARAM_ERROR
ENTRY_POINT_KINDS = ("NetworkOrchestrator", "Orchestrator")


@commands.list("listZones", "zone")
def list_zones(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return [{"id": z.uuid, "name": z.name, "networktype": "Advanced",
             "allocationstate": "Enabled", "dns1": z.dns[0]} for z in sim.db.zones.sorted()
            if p.text("id") in (None, z.uuid) and p.text("name") in (None, z.name)]


@commands.list("listHosts", "host")
def list_hosts(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    zone = sim.db.zones[1]
    return [{"id": h.uuid, "name": h.name, "type": "Routing", "hypervisor": "KVM",
             "state": "Up", "resourcestate": "Enabled", "zoneid": zone.uuid}
            for h in sim.db.hosts.sorted() if p.text("name") in (None, h.name)]


@commands.list("listPhysicalNetworks", "physicalnetwork")
def list_physical_networks(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    zone = sim.db.zones[1]
    if p.text("zoneid") not in (None, zone.uuid):
        return []
    return [{"id": n.uuid, "name": n.name, "zoneid": zone.uuid, "state": "Enabled",
             "isolationmethods": n.isolation, "broadcastdomainrange": "ZONE"}
            for n in sim.db.physical_networks.sorted()
            if p.text("id") in (None, n.uuid) and p.text("name") in (None, n.name)]


# --- extensions ----------------------------------------------------------------------


def directory_name(name: str) -> str:
    """Extension.getDirectoryName: unsafe characters to `_`, lower-cased."""
    return re.sub(r"[^a-zA-Z0-9._-]", "_", name).lower()


def extension_json(sim: CloudStackSim, extension: Extension) -> dict[str, Any]:
    path = sim.extensions_dir / extension.path
    return {
        "id": extension.uuid, "name": extension.name, "type": extension.type,
        "description": extension.description, "path": str(path),
        "pathready": path.is_file() and os.access(path, os.X_OK),
        "state": extension.state, "details": dict(extension.details),
        "resources": [{"id": sim.db.physical_networks[r.physical_network].uuid,
                       "name": sim.db.physical_networks[r.physical_network].name,
                       "type": "PhysicalNetwork", "details": dict(r.details)}
                      for r in extension.registrations],
    }


@commands.sync("createExtension", "extension")
def create_extension(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    name, kind = p.required("name"), p.required("type")
    if kind not in ENTRY_POINT_KINDS:
        raise ApiError(PARAM_ERROR, f"Invalid extension type: {kind}")
    if any(e.name.casefold() == name.casefold() for e in sim.db.extensions.values()):
        raise ApiError(PARAM_ERROR, f"Extension with name {name} already exists")
    directory = directory_name(name)
    relative = p.text("path") or f"{directory}.sh"
    if relative.startswith("/") or ".." in Path(relative).parts \
            or len(Path(relative).parts) > 3:
        raise ApiError(PARAM_ERROR, f"Invalid extension path: {relative}")
    extension = sim.db.extensions.add(Extension(
        sim.db.extensions.next_id(), name=name, type=kind, path=f"{directory}/{relative}",
        state=p.text("state") or "Enabled", description=p.text("description") or "",
        details=p.map("details")))
    return extension_json(sim, extension)


def _extension(sim: CloudStackSim, uuid: str) -> Extension:
    return find(sim.db.extensions, uuid, "extension")


@commands.list("listExtensions", "extension")
def list_extensions(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return [extension_json(sim, e) for e in sim.db.extensions.sorted()
            if p.text("id") in (None, e.uuid) and p.text("name") in (None, e.name)]


@commands.sync("updateExtension", "extension")
def update_extension(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    extension = _extension(sim, p.required("id"))
    if p.text("state"):
        extension.state = p.required("state")
    details = p.map("details")
    if details or p.boolean("cleanupdetails", False):
        extension.details = details
    if p.text("description") is not None:
        extension.description = p.required("description")
    return extension_json(sim, extension)


def _resource(sim: CloudStackSim, p: Params) -> int:
    if p.required("resourcetype") != "PhysicalNetwork":
        raise ApiError(PARAM_ERROR, "Only PhysicalNetwork resources take a "
                                    "NetworkOrchestrator extension")
    return find(sim.db.physical_networks, p.required("resourceid"), "physical network").db_id


@commands.sync("registerExtension", "extension")
def register_extension(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    extension = _extension(sim, p.required("extensionid"))
    network = _resource(sim, p)
    if any(r.physical_network == network for r in extension.registrations):
        raise ApiError(PARAM_ERROR, f"Extension {extension.name} is already registered "
                                    "with this physical network")
    extension.registrations.append(Registration(network, p.map("details")))
    # Registering creates the provider named after the extension, enabled.
    sim.db.providers.add(Provider(sim.db.providers.next_id(), name=extension.name,
                                  physical_network=network))
    return extension_json(sim, extension)


@commands.sync("updateRegisteredExtension", "extension")
def update_registered_extension(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    extension = _extension(sim, p.required("extensionid"))
    network = _resource(sim, p)
    registration = next((r for r in extension.registrations
                         if r.physical_network == network), None)
    if registration is None:
        raise ApiError(PARAM_ERROR, "The extension is not registered with this resource")
    registration.details = p.map("details")
    return extension_json(sim, extension)


# --- providers and offerings ---------------------------------------------------------


@commands.list("listNetworkServiceProviders", "networkserviceprovider")
def list_providers(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    network = p.text("physicalnetworkid")
    return [provider_json(sim, nsp) for nsp in sim.db.providers.sorted()
            if network in (None, sim.db.physical_networks[nsp.physical_network].uuid)
            and (p.text("name") or nsp.name).casefold() == nsp.name.casefold()]


def provider_json(sim: CloudStackSim, nsp: Provider) -> dict[str, Any]:
    return {"id": nsp.uuid, "name": nsp.name, "state": nsp.state,
            "physicalnetworkid": sim.db.physical_networks[nsp.physical_network].uuid,
            "canenableindividualservice": True}


@commands.asynchronous("updateNetworkServiceProvider", "networkserviceprovider")
def update_provider(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    nsp = find(sim.db.providers, p.required("id"), "network service provider")
    state = p.required("state")
    if state not in ("Enabled", "Disabled"):
        raise ApiError(PARAM_ERROR, f"Invalid state: {state}")
    nsp.state = state
    return provider_json(sim, nsp)


def offering_json(sim: CloudStackSim, offering: Offering) -> dict[str, Any]:
    services = [{"name": service, "provider": [{"name": provider}],
                 "capability": [{"name": c["capabilitytype"], "value": c["capabilityvalue"]}
                                for c in offering.capabilities if c.get("service") == service]}
                for service, provider in offering.services.items()]
    answer: dict[str, Any] = {"id": offering.uuid, "name": offering.name,
              "displaytext": offering.display_text, "state": offering.state,
              "service": services, "networkmode": offering.mode}
    if offering.kind == "network":
        answer.update(guestiptype=offering.guest_type, traffictype="Guest",
                      forvpc=offering.for_vpc, egressdefaultpolicy=offering.egress_default_allow)
    return answer


def _create_offering(sim: CloudStackSim, p: Params, kind: str) -> dict[str, Any]:
    name = p.required("name")
    if any(o.name == name and o.kind == kind for o in sim.db.offerings.values()):
        raise ApiError(PARAM_ERROR, f"An offering named {name} already exists")
    services = {item["service"]: item["provider"] for item in p.indexed("serviceproviderlist")
                if "service" in item and "provider" in item}
    known = {nsp.name.casefold() for nsp in sim.db.providers.values()} | {"virtualrouter"}
    for service, provider in services.items():
        if provider.casefold() not in known:
            raise ApiError(PARAM_ERROR, f"Unable to find network service provider {provider} "
                                        f"for service {service}")
    for service in p.csv("supportedservices"):
        services.setdefault(service, "VirtualRouter")
    offering = sim.db.offerings.add(Offering(
        sim.db.offerings.next_id(), kind=kind, name=name,
        display_text=p.text("displaytext") or name,
        guest_type=p.text("guestiptype") or "Isolated", services=services,
        capabilities=p.indexed("servicecapabilitylist"),
        for_vpc=p.boolean("forvpc", False), mode=(p.text("networkmode") or "NATTED").upper(),
        egress_default_allow=p.boolean("egressdefaultpolicy", True)))
    return offering_json(sim, offering)


def _update_offering(sim: CloudStackSim, p: Params, kind: str) -> dict[str, Any]:
    offering = find(sim.db.offerings, p.required("id"), f"{kind} offering")
    if p.text("state"):
        offering.state = p.required("state")
    return offering_json(sim, offering)


def _list_offerings(sim: CloudStackSim, p: Params, kind: str) -> list[dict[str, Any]]:
    return [offering_json(sim, o) for o in sim.db.offerings.sorted() if o.kind == kind
            and p.text("id") in (None, o.uuid) and p.text("name") in (None, o.name)
            and p.text("state") in (None, o.state)
            and (p.text("forvpc") is None or p.boolean("forvpc", False) == o.for_vpc)]


@commands.sync("createNetworkOffering", "networkoffering")
def create_network_offering(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    return _create_offering(sim, p, "network")


@commands.sync("updateNetworkOffering", "networkoffering")
def update_network_offering(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    return _update_offering(sim, p, "network")


@commands.list("listNetworkOfferings", "networkoffering")
def list_network_offerings(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return _list_offerings(sim, p, "network")


@commands.asynchronous("createVPCOffering", "vpcoffering")
def create_vpc_offering(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    return _create_offering(sim, p, "vpc")


@commands.asynchronous("updateVPCOffering", "vpcoffering")
def update_vpc_offering(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    return _update_offering(sim, p, "vpc")


@commands.list("listVPCOfferings", "vpcoffering")
def list_vpc_offerings(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return _list_offerings(sim, p, "vpc")


@commands.sync("addCustomAction", "extensioncustomaction")
def add_custom_action(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    extension = _extension(sim, p.required("extensionid"))
    name = p.required("name")
    if p.text("resourcetype") not in (None, "Network"):
        raise ApiError(PARAM_ERROR, "NetworkOrchestrator custom actions act on networks")
    uuid = new_uuid()
    sim.custom_actions[uuid] = name
    sim.custom_action_extensions[uuid] = extension.uuid
    return {"id": uuid, "name": name, "extensionid": extension.uuid,
            "resourcetype": "Network", "enabled": True}


@commands.list("listCustomActions", "extensioncustomaction")
def list_custom_actions(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    owners = sim.custom_action_extensions
    return [{"id": uuid, "name": name, "extensionid": owners.get(uuid),
             "resourcetype": "Network", "enabled": True}
            for uuid, name in sim.custom_actions.items()
            if p.text("name") in (None, name)
            and p.text("extensionid") in (None, owners.get(uuid))]
