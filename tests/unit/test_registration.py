"""`vxgate cloudstack register` against an in-memory CloudStack.

The fake answers the way CloudStack 4.23's code does where it matters (ExtensionsManagerImpl:
registering auto-creates an Enabled provider named after the extension; updating a
registration replaces its visible details; offerings are created Disabled).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from provider_service import cloudstack_registration as reg
from provider_service import registration_cli as cli

TOKEN = "tok-0123456789abcdef-SECRET"
SECRET = "cs-secret-key-XYZ"
URL = "http://10.0.0.5:8080"
ENV = {"CLOUDSTACK_ENDPOINT": "http://cs:8080/client/api", "CLOUDSTACK_KEY": "api-key-1",
       "CLOUDSTACK_SECRET": SECRET}


class FakeCloudStack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, str] = {}
        self.zones = [{"id": "z-1", "name": "zone1"}, {"id": "z-2", "name": "zone2"}]
        self.physical_networks = [
            {"id": "pn-1", "name": "guest", "zoneid": "z-1"},
            {"id": "pn-2", "name": "guest", "zoneid": "z-2"},
            {"id": "pn-3", "name": "public", "zoneid": "z-1"},
        ]
        self.extensions: list[dict[str, Any]] = []
        self.providers: list[dict[str, Any]] = []
        self.offerings: dict[str, list[dict[str, Any]]] = {"Network": [], "VPC": []}
        self.custom_actions: list[dict[str, Any]] = []

    # --- Api ---
    def call(self, command: str, params: reg.Params) -> reg.Record:
        self._record(command, params)
        offering = re.fullmatch(r"(create|update)(Network|VPC)Offering", command)
        if offering:
            verb, kind = offering.groups()
            method = self._create_offering if verb == "create" else self._update_offering
            return copy.deepcopy(method(kind, dict(params)))
        result: reg.Record = getattr(self, "_" + command)(dict(params))
        return copy.deepcopy(result)  # callers never share our objects

    def list_all(self, command: str, params: reg.Params) -> list[reg.Record]:
        self._record(command, params)
        return copy.deepcopy(self._list(command, dict(params)))

    def _record(self, command: str, params: reg.Params) -> None:
        self.calls.append((command, dict(params)))
        if command in self.fail:
            raise reg.CloudStackError(f"{command}: {self.fail[command]}")

    @property
    def changes(self) -> list[tuple[str, dict[str, Any]]]:
        return [(c, p) for c, p in self.calls if not c.startswith("list")]

    # --- lists ---
    def _list(self, command: str, p: dict[str, Any]) -> list[dict[str, Any]]:
        if command == "listZones":
            return self.zones
        if command == "listPhysicalNetworks":
            return [n for n in self.physical_networks if p.get("zoneid") in (None, n["zoneid"])]
        if command == "listExtensions":
            return [e for e in self.extensions if e["name"] == p["name"]]
        if command == "listNetworkServiceProviders":
            return [n for n in self.providers
                    if n["physicalnetworkid"] == p["physicalnetworkid"] and n["name"] == p["name"]]
        if command == "listCustomActions":
            return [a for a in self.custom_actions
                    if (a["extensionid"], a["name"]) == (p["extensionid"], p["name"])]
        kind = command.removeprefix("list").removesuffix("Offerings")
        return [o for o in self.offerings[kind] if o["name"] == p["name"]]

    # --- commands ---
    def _createExtension(self, p: dict[str, Any]) -> dict[str, Any]:
        extension = {"id": f"ext-{len(self.extensions) + 1}", "name": p["name"],
                     "type": p["type"], "state": p.get("state", "Enabled"),
                     "path": f"/usr/share/cloudstack-management/extensions/{p['name']}/"
                             f"{p['path']}",
                     "pathready": False, "details": _details(p["details"])}
        self.extensions.append(extension)
        return extension

    def _updateExtension(self, p: dict[str, Any]) -> dict[str, Any]:
        extension = self._extension(p["id"])
        if "details" in p:
            extension["details"] = _details(p["details"])
        extension.update({k: v for k, v in p.items() if k == "state"})
        return extension

    def _registerExtension(self, p: dict[str, Any]) -> dict[str, Any]:
        extension = self._extension(p["extensionid"])
        network = next(n for n in self.physical_networks if n["id"] == p["resourceid"])
        resources = extension.setdefault("resources", [])
        if any(r["id"] == network["id"] for r in resources):
            raise reg.CloudStackError("already registered")
        resources.append({"id": network["id"], "name": network["name"],
                          "type": p["resourcetype"], "details": _details(p["details"])})
        self.providers.append({"id": f"nsp-{len(self.providers) + 1}", "name": extension["name"],
                               "physicalnetworkid": network["id"], "state": "Enabled"})
        return extension

    def _updateRegisteredExtension(self, p: dict[str, Any]) -> dict[str, Any]:
        extension = self._extension(p["extensionid"])
        resource = next(r for r in extension["resources"] if r["id"] == p["resourceid"])
        resource["details"] = _details(p["details"])
        return extension

    def _updateNetworkServiceProvider(self, p: dict[str, Any]) -> dict[str, Any]:
        provider = next(n for n in self.providers if n["id"] == p["id"])
        provider["state"] = p["state"]
        return provider

    def _create_offering(self, kind: str, p: dict[str, Any]) -> dict[str, Any]:
        services = [{"name": e["service"], "provider": [{"name": e["provider"]}]}
                    for e in p["serviceproviderlist"]]
        offering = {"id": f"{kind}-off-{len(self.offerings[kind]) + 1}", "name": p["name"],
                    "state": "Disabled", "networkmode": p["networkmode"], "service": services}
        if "egressdefaultpolicy" in p:
            offering["egressdefaultpolicy"] = p["egressdefaultpolicy"] == "true"
        self.offerings[kind].append(offering)
        return offering

    def _update_offering(self, kind: str, p: dict[str, Any]) -> dict[str, Any]:
        offering = next(o for o in self.offerings[kind] if o["id"] == p["id"])
        offering["state"] = p["state"]
        return offering

    def _addCustomAction(self, p: dict[str, Any]) -> dict[str, Any]:
        action = {"id": f"ca-{len(self.custom_actions) + 1}", **p}
        self.custom_actions.append(action)
        return action

    def _extension(self, ext_id: str) -> dict[str, Any]:
        return next(e for e in self.extensions if e["id"] == ext_id)


def _details(details: list[dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for one in details:
        merged.update(one)
    return merged


def options(**overrides: Any) -> reg.Options:
    values: dict[str, Any] = {"physical_network": "guest", "zone": "zone1",
                              "service_url": URL, "token": TOKEN}
    values.update(overrides)
    return reg.Options(**values)


def register(fake: FakeCloudStack, **overrides: Any) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    warnings: list[str] = []
    reg.reconcile(fake, reg.build_plan(options(**overrides)), lines.append, warnings.append)
    return lines, warnings


def offering_params(fake: FakeCloudStack, name: str) -> dict[str, Any]:
    return next(p for c, p in fake.changes if c.startswith("create") and p["name"] == name)


# --- first run ------------------------------------------------------------------------


def test_first_run_creates_everything_in_order() -> None:
    fake = FakeCloudStack()
    lines, warnings = register(fake)
    assert [c for c, _ in fake.changes] == [
        "createExtension", "registerExtension", "addCustomAction", "addCustomAction",
        "createExtension", "registerExtension", "addCustomAction", "addCustomAction",
        "createNetworkOffering", "updateNetworkOffering",
        "createNetworkOffering", "updateNetworkOffering",
        "createNetworkOffering", "updateNetworkOffering",
        "createVPCOffering", "updateVPCOffering",
    ]
    assert lines == [
        "created extension vxgate (entry-point "
        "/usr/share/cloudstack-management/extensions/vxgate/vxgate_extension.py)",
        "created registration of vxgate on physical network guest",
        "unchanged network service provider vxgate on physical network guest",
        "created custom action attach-vlan of vxgate",
        "created custom action detach-vlan of vxgate",
        "created extension vxgate-routed (entry-point "
        "/usr/share/cloudstack-management/extensions/vxgate-routed/vxgate_extension.py)",
        "created registration of vxgate-routed on physical network guest",
        "unchanged network service provider vxgate-routed on physical network guest",
        "created custom action attach-vlan of vxgate-routed",
        "created custom action detach-vlan of vxgate-routed",
        "created network offering vxgate-isolated-natted",
        "created network offering vxgate-isolated-routed",
        "created network offering vxgate-vpc-tier",
        "created VPC offering vxgate-vpc",
    ]
    # The fake reports the entry-point missing, as CloudStack does before it is deployed.
    assert warnings == [
        f"CloudStack reports /usr/share/cloudstack-management/extensions/{name}/"
        "vxgate_extension.py not ready (yet): install the entry-point on every management "
        "server (docs/cloudstack-registration.md)" for name in ("vxgate", "vxgate-routed")]


def test_custom_actions_attach_and_detach_vlan_once_per_extension() -> None:
    fake = FakeCloudStack()
    register(fake)
    added = [p for c, p in fake.changes if c == "addCustomAction"]
    assert [(p["extensionid"], p["name"]) for p in added] == [
        ("ext-1", "attach-vlan"), ("ext-1", "detach-vlan"),
        ("ext-2", "attach-vlan"), ("ext-2", "detach-vlan")]
    assert added[0]["resourcetype"] == "Network"
    assert added[0]["parameters"] == [
        {"name": "device", "type": "STRING", "required": "true"},
        {"name": "port", "type": "STRING", "required": "true"},
        {"name": "vlan", "type": "NUMBER", "required": "true"}]
    fake.calls.clear()
    lines, _ = register(fake)
    assert not fake.changes
    assert "unchanged custom action detach-vlan of vxgate-routed" in lines


def test_extension_parameters() -> None:
    fake = FakeCloudStack()
    register(fake)
    _command, params = fake.changes[0]
    assert params == {
        "name": "vxgate", "type": "NetworkOrchestrator", "path": "vxgate_extension.py",
        "description": params["description"], "state": "Enabled",
        "details": [
            {"network.services": "SourceNat,StaticNat,PortForwarding,Firewall,Lb,NetworkACL,"
                                 "Dhcp,Dns,UserData,Gateway,CustomAction"},
            {"network.service.capabilities": params["details"][1]["network.service.capabilities"]},
            {"network.isolation.method": "NetworkExtension"},
        ],
    }
    capabilities = json.loads(params["details"][1]["network.service.capabilities"])
    assert capabilities["SourceNat"] == {"SupportedSourceNatTypes": "peraccount"}
    assert capabilities["Lb"] == {"SupportedLBAlgorithms": "roundrobin,leastconn,source",
                                  "SupportedProtocols": "tcp,udp", "LbSchemes": "Public"}
    assert capabilities["Firewall"]["SupportedTrafficDirection"] == "ingress,egress"
    assert capabilities["Dhcp"] == {"DhcpAccrossMultipleSubnets": "false"}
    declared = json.dumps(capabilities)
    for absent in ("RedundantRouter", "SupportedStickinessMethods", "Internal", "Vpn"):
        assert absent not in declared


def test_registration_parameters_use_extensionid() -> None:
    fake = FakeCloudStack()
    register(fake)
    assert fake.changes[1] == ("registerExtension", {
        "extensionid": "ext-1", "resourcetype": "PhysicalNetwork", "resourceid": "pn-1",
        "details": [{"vxgate.url": URL}, {"vxgate.token": TOKEN}],
    })


def test_registration_keys_are_the_entry_points() -> None:
    from plugin import vxgate_extension

    natted, routed = reg.build_plan(options()).extensions
    assert set(natted.registration_details) == {vxgate_extension.URL_KEY,
                                                vxgate_extension.TOKEN_KEY}
    assert routed.registration_details == {**natted.registration_details,
                                           vxgate_extension.MODE_KEY: "routed"}


def test_isolated_natted_offering() -> None:
    fake = FakeCloudStack()
    register(fake)
    services = ["SourceNat", "StaticNat", "PortForwarding", "Firewall", "Lb", "Dhcp", "Dns",
                "UserData", "Gateway", "CustomAction"]
    assert offering_params(fake, "vxgate-isolated-natted") == {
        "name": "vxgate-isolated-natted",
        "displaytext": "vxgate isolated network, source NAT",
        "guestiptype": "Isolated", "traffictype": "GUEST", "networkmode": "NATTED",
        "supportedservices": ",".join(services),
        "serviceproviderlist": [{"service": s, "provider": "vxgate"} for s in services],
        "servicecapabilitylist": [{"service": "SourceNat",
                                   "capabilitytype": "SupportedSourceNatTypes",
                                   "capabilityvalue": "peraccount"}],
        "egressdefaultpolicy": "true",
    }
    assert ("updateNetworkOffering", {"id": "Network-off-1", "state": "Enabled"}) in fake.changes


def test_routed_offering_translates_nothing() -> None:
    fake = FakeCloudStack()
    register(fake, egress_default_allow=False)
    params = offering_params(fake, "vxgate-isolated-routed")
    assert params["networkmode"] == "ROUTED"
    # Served by the routed extension: its registration tells the service the mode.
    assert {entry["provider"] for entry in params["serviceproviderlist"]} == {"vxgate-routed"}
    assert params["supportedservices"] == "Firewall,Dhcp,Dns,UserData,Gateway,CustomAction"
    assert "servicecapabilitylist" not in params
    assert params["egressdefaultpolicy"] == "false"


def test_vpc_tier_and_vpc_offerings() -> None:
    fake = FakeCloudStack()
    register(fake)
    tier = offering_params(fake, "vxgate-vpc-tier")
    assert tier["forvpc"] == "true"
    assert tier["networkmode"] == "NATTED"
    assert "Firewall" not in tier["supportedservices"].split(",")
    assert "NetworkACL" in tier["supportedservices"].split(",")
    assert "egressdefaultpolicy" not in tier  # ACLs decide egress in a VPC
    vpc = offering_params(fake, "vxgate-vpc")
    assert set(vpc) == {"name", "displaytext", "networkmode", "supportedservices",
                        "serviceproviderlist"}
    assert vpc["supportedservices"] == tier["supportedservices"]
    assert all(e["provider"] == "vxgate" for e in vpc["serviceproviderlist"])


# --- second run and drift --------------------------------------------------------------


def test_second_run_changes_nothing() -> None:
    fake = FakeCloudStack()
    register(fake)
    before = len(fake.changes)
    lines, warnings = register(fake)
    assert len(fake.changes) == before
    assert all(line.startswith("unchanged ") for line in lines), lines
    assert len(lines) == 14  # 2 extensions with 5 objects each, 4 offerings
    assert warnings == [w for w in warnings if "not ready" in w]


def test_changed_token_updates_the_registration_only() -> None:
    fake = FakeCloudStack()
    register(fake)
    fake.extensions[0]["resources"][0]["details"]["sshkey-note"] = "kept"
    before = len(fake.changes)
    lines, _ = register(fake, token="another-token-0123456789")
    assert fake.changes[before:] == [("updateRegisteredExtension", {
        "extensionid": "ext-1", "resourcetype": "PhysicalNetwork", "resourceid": "pn-1",
        "details": [{"vxgate.url": URL}, {"vxgate.token": "another-token-0123456789"},
                    {"sshkey-note": "kept"}],
    }), ("updateRegisteredExtension", {
        "extensionid": "ext-2", "resourcetype": "PhysicalNetwork", "resourceid": "pn-1",
        "details": [{"vxgate.url": URL}, {"vxgate.token": "another-token-0123456789"},
                    {"vxgate.network_mode": "routed"}],
    })]
    assert "updated registration of vxgate on physical network guest: vxgate.token" in lines
    assert not any("another-token" in line for line in lines)


def test_disabled_extension_and_provider_are_enabled() -> None:
    fake = FakeCloudStack()
    register(fake)
    fake.extensions[0]["state"] = "Disabled"
    fake.providers[0]["state"] = "Disabled"
    before = len(fake.changes)
    lines, _ = register(fake)
    assert fake.changes[before:] == [
        ("updateExtension", {"id": "ext-1", "state": "Enabled"}),
        ("updateNetworkServiceProvider", {"id": "nsp-1", "state": "Enabled"}),
    ]
    assert "updated extension vxgate: state Enabled" in lines
    assert "updated network service provider vxgate on physical network guest: " \
           "state Enabled" in lines


def test_extension_detail_drift_keeps_other_details() -> None:
    fake = FakeCloudStack()
    register(fake)
    details = fake.extensions[0]["details"]
    details["network.services"] = "SourceNat,Dhcp"
    details["network.allocate.extension.ip"] = "false"
    # Spacing and key order of the capability JSON are not a change.
    details["network.service.capabilities"] = json.dumps(
        dict(reversed(json.loads(details["network.service.capabilities"]).items())), indent=2)
    before = len(fake.changes)
    lines, _ = register(fake)
    (command, params), = fake.changes[before:]
    assert command == "updateExtension"
    assert set(params) == {"id", "details"}
    sent = _details(params["details"])
    assert sent["network.allocate.extension.ip"] == "false"
    assert reg._csv(sent["network.services"]) == set(reg.SERVICES)
    assert "updated extension vxgate: network.services" in lines


def test_disabled_offering_is_enabled_and_drift_is_reported() -> None:
    fake = FakeCloudStack()
    register(fake)
    natted = fake.offerings["Network"][0]
    natted["state"] = "Disabled"
    natted["service"][0]["provider"] = [{"name": "VirtualRouter"}]
    before = len(fake.changes)
    lines, warnings = register(fake)
    assert fake.changes[before:] == [("updateNetworkOffering",
                                      {"id": natted["id"], "state": "Enabled"})]
    assert "updated network offering vxgate-isolated-natted: state Enabled" in lines
    assert any("vxgate-isolated-natted exists but differs" in w and "VirtualRouter" in w
               for w in warnings)


def test_other_extension_type_is_an_error() -> None:
    fake = FakeCloudStack()
    fake.extensions.append({"id": "e9", "name": "vxgate", "type": "Orchestrator",
                            "state": "Enabled"})
    with pytest.raises(reg.RegistrationError, match="type Orchestrator"):
        register(fake)
    assert fake.changes == []


# --- lookups and errors ----------------------------------------------------------------


def test_ambiguous_physical_network_needs_a_zone() -> None:
    fake = FakeCloudStack()
    with pytest.raises(reg.RegistrationError, match=r"2 physical networks .* --zone"):
        register(fake, zone=None)
    assert fake.changes == []


def test_physical_network_by_id_without_zone() -> None:
    fake = FakeCloudStack()
    register(fake, physical_network="pn-2", zone=None)
    assert fake.changes[1][1]["resourceid"] == "pn-2"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"physical_network": "nope"}, "no physical network 'nope' in zone zone1"),
    ({"zone": "zone9"}, "no zone 'zone9'"),
])
def test_lookup_errors(overrides: dict[str, str], message: str) -> None:
    fake = FakeCloudStack()
    with pytest.raises(reg.RegistrationError, match=message):
        register(fake, **overrides)
    assert fake.changes == []


def test_missing_provider_is_an_error() -> None:
    fake = FakeCloudStack()
    register(fake)
    fake.providers.clear()
    with pytest.raises(reg.RegistrationError, match=r"provider vxgate .* is missing"):
        register(fake)


def test_cloudstack_error_names_the_step() -> None:
    fake = FakeCloudStack()
    fake.fail["createNetworkOffering"] = "routed networks are disabled"
    with pytest.raises(reg.CloudStackError) as caught:
        register(fake)
    assert str(caught.value) == ("network offering vxgate-isolated-natted: "
                                 "createNetworkOffering: routed networks are disabled")


# --- the command line -----------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vxgate")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["cloudstack", "register", *argv])


def run_cli(fake: FakeCloudStack, *argv: str, env: Mapping[str, str] = ENV,
            issuer: reg.TokenIssuer | None = None) -> int:
    seen: list[tuple[str, str, str, tuple[str, ...]]] = []

    def factory(endpoint: str, key: str, secret: str, secrets: tuple[str, ...]) -> reg.Api:
        seen.append((endpoint, key, secret, secrets))
        return fake

    # The service hands back the token given: these tests are about CloudStack's side
    # (test_cli_puts_the_extension_token_not_the_admin_token is about the tokens).
    code = cli.run(parse(*argv), environ=env, api_factory=factory,
                   token_issuer=issuer or (lambda name, held: parse(*argv).token or TOKEN))
    if seen:
        assert seen[0][:3] == ("http://cs:8080/client/api", "api-key-1", SECRET)
    return code


BASIC = ("--physical-network", "guest", "--zone", "zone1", "--service-url", URL + "/")


def test_cli_run_prints_one_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCloudStack()
    assert run_cli(fake, *BASIC, "--token", TOKEN) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 14
    assert err.startswith("warning: ")
    assert fake.changes[1][1]["details"] == [{"vxgate.url": URL}, {"vxgate.token": TOKEN}]
    assert run_cli(fake, *BASIC, "--token", TOKEN) == 0
    out, _ = capsys.readouterr()
    assert all(line.startswith("unchanged ") for line in out.splitlines())
    assert TOKEN not in out + err and SECRET not in out + err


def test_cli_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    fake = FakeCloudStack()
    assert run_cli(fake, *BASIC, "--token-file", str(path)) == 0
    assert fake.changes[1][1]["details"][1] == {"vxgate.token": TOKEN}
    assert run_cli(fake, *BASIC, "--token-file", str(tmp_path / "none")) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"vxgate: cloudstack register: cannot read token file {tmp_path / 'none'}: " \
                  "No such file or directory"


def test_cli_error_is_one_line_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCloudStack()
    fake.fail["registerExtension"] = f"bad details vxgate.token={TOKEN}\n(key {SECRET})"
    assert run_cli(fake, *BASIC, "--token", TOKEN) == 1
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()
    assert last[-1].startswith("vxgate: cloudstack register: registration of vxgate on ")
    assert "vxgate.token=*** (key ***)" in last[-1]
    assert "Traceback" not in captured.err
    assert TOKEN not in captured.out + captured.err and SECRET not in captured.err


def test_cli_unexpected_error_has_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(FakeCloudStack):
        def list_all(self, command: str, params: reg.Params) -> list[reg.Record]:
            raise KeyError(SECRET)

    assert run_cli(Broken(), *BASIC, "--token", TOKEN) == 1
    err = capsys.readouterr().err
    assert err == "vxgate: cloudstack register: unexpected KeyError: '***'\n"


@pytest.mark.parametrize(("argv", "env", "message"), [
    (("--token", TOKEN), {}, "no CloudStack endpoint: pass --endpoint or set "
                             "CLOUDSTACK_ENDPOINT"),
    (("--token", TOKEN), {**ENV, "CLOUDSTACK_SECRET": ""},
     "no CloudStack secret key: pass --secret-key or set CLOUDSTACK_SECRET"),
    (("--token", "short"), ENV, "the token must be one word of at least 16 characters"),
    (("--token", TOKEN, "--service-url", "ftp://x"), ENV, "--service-url must look like"),
    (("--token", TOKEN, "--service-url", "http://u:p@x"), ENV, "--service-url must look like"),
    (("--token", TOKEN, "--name", "vx gate"), ENV, "--name may hold only"),
    (("--token", TOKEN, "--entry-point", "../x.py"), ENV, "--entry-point must be a plain"),
])
def test_cli_usage_errors(argv: tuple[str, ...], env: dict[str, str], message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCloudStack()
    assert run_cli(fake, *BASIC, *argv, env=env) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vxgate: cloudstack register: {message}")
    assert err.count("\n") == 1
    assert fake.calls == []


def test_cli_flags_override_environment() -> None:
    args = parse(*BASIC, "--token", TOKEN, "--endpoint", "https://other/client/api",
                 "--api-key", "k2", "--secret-key", "s2")
    assert cli._credentials(args, ENV) == ("https://other/client/api", "k2", "s2")
