"""NICs, DHCP/DNS entries, VM data and restore-network through the API.

Bodies are shaped like CloudStack's payloads (addNicToPayload + hostname, vm_data,
restore_data), as the plugin passes them through.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from provider_service.api.body import Body
from provider_service.api.vm_parsing import MAX_RESTORE_NICS, RESTORE_FIELDS, parse_restore
from provider_service.errors import BadRequest
from provider_service.models.vms import NetworkServices, Nic, NicVmData
from provider_service.vms import password_checksum
from tests.conftest import ZONE, Api

NET = "/v1/networks/42"
MAC = "02:00:0a:01:00:05"
MAC2 = "02:00:0a:01:00:06"
NIC = f"{NET}/nics/{MAC}"
NIC2 = f"{NET}/nics/{MAC2}"
DNS = {"dns": "192.0.2.53,192.0.2.54", "domain": "cs.lab"}
VM_DATA = [
    {"dir": "userdata", "file": "user_data", "content": "#cloud-config\nruncmd: [echo hi]\n"},
    {"dir": "metadata", "file": "instance-id", "content": "i-2-17-VM"},
    {"dir": "metadata", "file": "local-hostname", "content": "web-1"},
    {"dir": "metadata", "file": "public-keys", "content": "ssh-ed25519 AAAAC3Nz user@host"},
    {"dir": "password", "file": "vm_password", "content": "s3cret-Pa55"},
]


def nic(mac: str = MAC, ip: str = "10.1.0.5", hostname: object = "web-1", **extra: Any) -> Any:
    """addNicToPayload + hostname, with CloudStack's types (strings, stringified flags)."""
    return {"nic_id": "17", "nic_uuid": "3f0c2a4e-1b7d-4e55-9a61-0c9d2b7e8f10", "mac": mac,
            "ip": ip, "gateway": "10.1.0.1", "netmask": "255.255.255.0", "default_nic": "true",
            "device_id": "0", "hostname": hostname, **extra}


@pytest.fixture
def net(api: Api, zone: Any) -> Any:
    return api.ok("PUT", NET, {"zone_id": ZONE, "cidr": "10.1.0.0/24", "gateway": "10.1.0.1",
                               "ip6_cidr": "2001:db8:1::/64", "ip6_gateway": "2001:db8:1::1",
                               "extension_ip": "10.1.0.2"})


def start_vm(api: Api, mac: str = MAC, ip: str = "10.1.0.5", hostname: str = "web-1") -> None:
    """The calls of one VM start, in CloudStack's order (protocol.md §3, 13-23)."""
    path = f"{NET}/nics/{mac}"
    api.ok("PUT", path, nic(mac, ip, hostname))
    api.ok("PUT", f"{NET}/dhcp", DNS)
    api.ok("PUT", f"{path}/dhcp", {**nic(mac, ip, hostname), **DNS})
    api.ok("PUT", f"{NET}/dns", DNS)
    api.ok("PUT", f"{path}/dns", {**nic(mac, ip, hostname), **DNS})
    api.ok("PUT", f"{path}/vm-data", {**nic(mac, ip, hostname), "vm_data": VM_DATA})


def snapshot(api: Api) -> Any:
    return (api.ok("GET", f"{NET}/nics"), [api.ok("GET", f"{NET}/nics/{n['mac']}")
                                           for n in api.ok("GET", f"{NET}/nics")],
            api.ok("GET", f"{NET}/dhcp"))


def stored(app: Flask, model: Any) -> int:
    with app.extensions["vxgate.db"].read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def updated_at(app: Flask) -> Any:
    with app.extensions["vxgate.db"].read() as session:
        row = session.get(Nic, ("42", MAC))
        return None if row is None else row.updated_at


def file_content(app: Flask, directory: str, name: str, mac: str = MAC) -> str | None:
    """A stored VM data file, read from the database: the API never shows passwords."""
    with app.extensions["vxgate.db"].read() as session:
        row = session.get(NicVmData, ("42", mac, directory, name))
        return None if row is None else row.content


# --- NICs ------------------------------------------------------------------------------


def test_prepare_nic_stores_cloudstack_fields(api: Api, net: Any) -> None:
    got = api.ok("PUT", NIC, nic(ip6_address="2001:db8:1::5", ip6_gateway="2001:db8:1::1",
                                  ip6_cidr="2001:db8:1::/64", default_nic=False, device_id=1))
    assert got == {
        "network_id": "42", "mac": MAC, "nic_id": "17",
        "nic_uuid": "3f0c2a4e-1b7d-4e55-9a61-0c9d2b7e8f10", "ip": "10.1.0.5",
        "ip6_address": "2001:db8:1::5", "hostname": "web-1", "default_nic": False,
        "device_id": "1", "dhcp_entry": False, "dns_entry": False, "has_password": False,
        "vm_data": [],
    }
    assert api.ok("GET", f"{NET}/nics/{MAC.upper()}") == got  # MACs are case-insensitive


def test_left_out_fields_are_kept_and_blank_clears(api: Api, net: Any) -> None:
    api.ok("PUT", NIC, nic(ip6_address="2001:db8:1::5"))
    got = api.ok("PUT", NIC, {"ip": "10.1.0.9"})
    assert (got["ip"], got["ip6_address"], got["hostname"], got["nic_id"]) == (
        "10.1.0.9", "2001:db8:1::5", "web-1", "17")
    got = api.ok("PUT", NIC, {"ip6_address": "", "hostname": ""})
    assert (got["ip6_address"], got["hostname"]) == ("", "")


def test_release_nic_removes_it_with_its_data_and_is_idempotent(
    api: Api, net: Any, app: Flask
) -> None:
    start_vm(api)
    api.ok("DELETE", NIC, status=204)
    api.ok("DELETE", NIC, status=204)
    api.ok("DELETE", f"/v1/networks/99/nics/{MAC}", status=204)  # network long gone
    assert api.ok("GET", f"{NET}/nics") == []
    assert "unknown NIC" in api.fails("GET", NIC, None, 404)
    assert stored(app, NicVmData) == 0
    start_vm(api)  # the next start brings everything back
    assert api.ok("GET", NIC)["has_password"] is True


def test_vm_start_sequence_replayed_is_identical(api: Api, net: Any, app: Flask) -> None:
    start_vm(api)
    first = snapshot(api)
    stamp = updated_at(app)
    start_vm(api)
    assert snapshot(api) == first
    assert updated_at(app) == stamp
    nics, (one,), services = first
    assert nics[0]["dhcp_entry"] and nics[0]["dns_entry"] and nics[0]["has_password"]
    assert all("content" not in item for item in nics[0]["vm_data"])
    assert {"dir": "userdata", "file": "user_data",
            "content": VM_DATA[0]["content"]} in one["vm_data"]
    assert not any(item["dir"] == "password" for item in one["vm_data"])
    assert "s3cret" not in str(first)
    assert services == {"network_id": "42", "dhcp_enabled": True, "dns_enabled": True,
                        "dns": ["192.0.2.53", "192.0.2.54"], "domain": "cs.lab"}
    assert stored(app, NicVmData) == len(VM_DATA)


# --- DHCP and DNS entries --------------------------------------------------------------


def test_entries_upsert_the_nic_and_are_removed_idempotently(api: Api, net: Any) -> None:
    # No prepare-nic first: CloudStack ignores its failure and goes on with the entries.
    got = api.ok("PUT", f"{NIC}/dhcp", {**nic(), **DNS})
    assert (got["dhcp_entry"], got["dns_entry"], got["ip"]) == (True, False, "10.1.0.5")
    assert api.ok("GET", f"{NET}/dns")["dns"] == ["192.0.2.53", "192.0.2.54"]
    assert api.ok("PUT", f"{NIC}/dns", {})["dns_entry"] is True
    for service in ("dhcp", "dns"):
        api.ok("DELETE", f"{NIC}/{service}", status=204)
        api.ok("DELETE", f"{NIC}/{service}", status=204)
        api.ok("DELETE", f"{NIC2}/{service}", status=204)  # no such NIC: nothing to do
    got = api.ok("GET", NIC)
    assert (got["dhcp_entry"], got["dns_entry"]) == (False, False)


def test_subnet_services_enable_and_disable(api: Api, net: Any) -> None:
    default = {"network_id": "42", "dhcp_enabled": False, "dns_enabled": False, "dns": [],
               "domain": ""}
    assert api.ok("GET", f"{NET}/dhcp") == default
    api.ok("DELETE", f"{NET}/dhcp", status=204)  # never configured: no-op
    assert api.ok("PUT", f"{NET}/dhcp", DNS)["dhcp_enabled"] is True
    got = api.ok("PUT", f"{NET}/dns", {"dns": ["192.0.2.53"]})
    assert (got["dhcp_enabled"], got["dns_enabled"], got["dns"], got["domain"]) == (
        True, True, ["192.0.2.53"], "cs.lab")
    api.ok("DELETE", f"{NET}/dhcp", status=204)
    api.ok("DELETE", f"{NET}/dns", status=204)
    assert api.ok("GET", f"{NET}/dns") == {**default, "dns": ["192.0.2.53"], "domain": "cs.lab"}
    assert "unknown network 99" in api.fails("PUT", "/v1/networks/99/dhcp", DNS, 404)
    assert "unknown network 99" in api.fails("GET", "/v1/networks/99/dns", None, 404)
    api.ok("DELETE", "/v1/networks/99/dns", status=204)


def test_addresses_and_dns_names_are_unique_per_network(api: Api, net: Any) -> None:
    api.ok("PUT", f"{NIC}/dns", nic(hostname="web"))
    error = api.fails("PUT", NIC2, nic(MAC2, "10.1.0.5", "db"), 409)
    assert error == f"ip: 10.1.0.5 is already used by NIC {MAC} on network 42"
    api.ok("PUT", NIC, nic(hostname="web", ip6_address="2001:db8:1::5"))
    assert "ip6_address: 2001:db8:1::5 is already used" in api.fails(
        "PUT", NIC2, nic(MAC2, "10.1.0.6", "db", ip6_address="2001:db8:1::5"), 409)
    # The same host name is fine until both NICs publish it (DNS is case-insensitive).
    api.ok("PUT", NIC2, nic(MAC2, "10.1.0.6", "WEB"))
    assert "hostname: WEB is already used" in api.fails("PUT", f"{NIC2}/dns", {}, 409)
    api.ok("DELETE", f"{NIC}/dns", status=204)
    assert api.ok("PUT", f"{NIC2}/dns", {})["dns_entry"] is True
    api.ok("DELETE", NIC2, status=204)
    api.ok("PUT", NIC2, nic(MAC2, "10.1.0.6", "web"))
    # An address freed by release-nic is free again.
    api.ok("DELETE", NIC, status=204)
    api.ok("PUT", NIC2, {"ip": "10.1.0.5"})


# --- VM data ---------------------------------------------------------------------------


def test_save_vm_data_replaces_but_keeps_the_password(api: Api, net: Any, app: Flask) -> None:
    api.ok("PUT", f"{NIC}/vm-data", {**nic(), "vm_data": VM_DATA})
    got = api.ok("PUT", f"{NIC}/vm-data", {"vm_data": VM_DATA[1:2]})  # start without password
    assert got["has_password"] is True
    assert got["vm_data"] == [{"dir": "metadata", "file": "instance-id"}]
    new = [{"dir": "password", "file": "vm_password", "content": "n3w"}]
    api.ok("PUT", f"{NIC}/vm-data", {"vm_data": new})
    assert file_content(app, "password", "vm_password") == "n3w"
    assert file_content(app, "metadata", "instance-id") is None


@pytest.mark.parametrize(
    ("item", "body", "dir_file"),
    [
        ("userdata", {"userdata": "#!/bin/sh\necho hi\n"}, ("userdata", "user_data")),
        ("sshkey", {"sshkey": "ssh-rsa AAAAB3 k@h"}, ("metadata", "public-keys")),
        ("hypervisor-hostname", {"hypervisor_hostname": "kvm-07.lab"},
         ("metadata", "hypervisor-host-name")),
        ("password", {"password": "pw-2"}, ("password", "vm_password")),
    ],
)
def test_single_vm_data_items(
    api: Api, net: Any, app: Flask, item: str, body: Any, dir_file: tuple[str, str]
) -> None:
    api.ok("PUT", f"{NIC}/vm-data", {**nic(), "vm_data": VM_DATA})
    first = api.ok("PUT", f"{NIC}/vm-data/{item}", {**nic(), **body})
    assert api.ok("PUT", f"{NIC}/vm-data/{item}", {**nic(), **body}) == first
    assert file_content(app, *dir_file) == next(iter(body.values()))
    assert stored(app, NicVmData) == len(VM_DATA) + (item == "hypervisor-hostname")
    assert first["has_password"] is True
    assert "pw-2" not in str(api.ok("GET", NIC))


def test_save_password_refreshes_a_windows_checksum(api: Api, net: Any, app: Flask) -> None:
    data = [{"dir": "password", "file": "vm_password", "content": "old"},
            {"dir": "password", "file": "vm-password-md5checksum",
             "content": password_checksum("old")}]
    api.ok("PUT", f"{NIC}/vm-data", {**nic(), "vm_data": data})
    api.ok("PUT", f"{NIC}/vm-data/password", {"password": "new"})
    assert file_content(app, "password", "vm-password-md5checksum") == password_checksum("new")


def test_unknown_vm_data_item_is_404(api: Api, net: Any) -> None:
    assert "unknown VM data item 'bios'" in api.fails(
        "PUT", f"{NIC}/vm-data/bios", {"bios": "x"}, 404)


# --- restore-network -------------------------------------------------------------------


def restore_vm(mac: str, ip: str, hostname: str, vm_data: Any = ()) -> Any:
    """One item of restore_data.vms: no nic_id, default_nic a JSON boolean, no password."""
    return {"dns": DNS["dns"], "domain": "cs.lab", "ip": ip, "mac": mac,
            "nic_uuid": "3f0c2a4e-1b7d-4e55-9a61-0c9d2b7e8f10", "hostname": hostname,
            "device_id": "0", "default_nic": True, "vm_data": list(vm_data)}


def restore_body(*vms: Any, **flags: Any) -> Any:
    return {"dhcp_enabled": flags.get("dhcp", True), "dns_enabled": flags.get("dns", True),
            "userdata_enabled": flags.get("userdata", True), **DNS, "vms": list(vms)}


def test_restore_rebuilds_the_network_and_keeps_passwords(
    api: Api, net: Any, app: Flask
) -> None:
    start_vm(api)
    api.ok("PUT", f"{NET}/nics/02:00:0a:01:00:99", nic("02:00:0a:01:00:99", "10.1.0.99", "old"))
    body = restore_body(restore_vm(MAC, "10.1.0.5", "web-1", VM_DATA[:4]),
                        restore_vm(MAC2, "10.1.0.6", "db-1", VM_DATA[1:2]))
    result = api.ok("POST", f"{NET}/restore", body)
    assert [n["mac"] for n in result["nics"]] == [MAC, MAC2]  # the unlisted NIC is gone
    web, db = result["nics"]
    assert web["has_password"] and web["nic_id"] == "17"  # kept: restore sends neither
    assert db["dhcp_entry"] and db["dns_entry"] and not db["has_password"]
    assert result["services"]["dhcp_enabled"] and result["services"]["dns_enabled"]
    assert api.ok("POST", f"{NET}/restore", body) == result  # replay: no change
    assert api.ok("GET", f"{NET}/nics") == result["nics"]
    assert stored(app, NicVmData) == 4 + 1 + 1  # web's four files + password, db's one
    # Two NICs may trade addresses and names in one restore.
    swapped = api.ok("POST", f"{NET}/restore", restore_body(
        restore_vm(MAC, "10.1.0.6", "db-1"), restore_vm(MAC2, "10.1.0.5", "web-1")))
    assert [(n["ip"], n["hostname"]) for n in swapped["nics"]] == [("10.1.0.6", "db-1"),
                                                                 ("10.1.0.5", "web-1")]
    # Services no longer ours: entries and VM data (passwords too) go.
    result = api.ok("POST", f"{NET}/restore",
                    restore_body(restore_vm(MAC, "10.1.0.5", "web-1"), dhcp=False, dns=False,
                                 userdata=False))
    (web,) = result["nics"]
    assert not (web["dhcp_entry"] or web["dns_entry"] or web["has_password"] or web["vm_data"])
    assert stored(app, NicVmData) == 0


@pytest.mark.parametrize(
    ("vms", "status", "message"),
    [
        ([restore_vm(MAC2, "10.1.0.6", "db-1"), restore_vm(MAC, "10.9.0.5", "web-1")], 400,
         "ip: 10.9.0.5 is outside 10.1.0.0/24"),
        ([restore_vm(MAC2, "10.1.0.5", "db-1"), restore_vm(MAC, "10.1.0.5", "web-1")], 409,
         "ip: 10.1.0.5 is already used"),
        ([restore_vm(MAC2, "10.1.0.6", "web-1"), restore_vm(MAC, "10.1.0.5", "WEB-1")], 409,
         f"hostname: WEB-1 is already used by NIC {MAC2} on network 42"),
        ([restore_vm(MAC2, "10.1.0.6", "db-1"), restore_vm(MAC2, "10.1.0.7", "db-2")], 400,
         "vms[1].mac: 02:00:0a:01:00:06 is listed twice"),
        ([restore_vm(MAC2, "10.1.0.6", "db;1")], 400, "vms[0].hostname: not a valid host"),
        ([{**restore_vm(MAC2, "10.1.0.6", "db-1"), "nic": 1}], 400, "vms[0].unknown field"),
        ([restore_vm(MAC2, "10.1.0.6", "db-1", [{"dir": "metadata", "file": "a/b",
                                                  "content": ""}])], 400,
         "vms[0].vm_data[0].file: use 1-64"),
    ],
)
def test_restore_is_one_transaction(
    api: Api, net: Any, vms: Any, status: int, message: str
) -> None:
    start_vm(api)
    before = snapshot(api)
    assert message in api.fails("POST", f"{NET}/restore", restore_body(*vms), status)
    assert snapshot(api) == before


# --- refusals --------------------------------------------------------------------------

_BIG = "a" * (1024 * 1024 + 1)


def _item(**fields: Any) -> Any:
    return {"vm_data": [{"dir": "metadata", "file": "instance-id", "content": "x", **fields}]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        # host names: one RFC 1123 label, nothing that could break a config line
        ("PUT", NIC, nic(hostname="web\n1"), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname="web-1\n"), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname='web"1'), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname="web;reboot"), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname="web{1}"), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname="web\x001"), 400, "the request body holds a NUL character"),
        ("PUT", NIC, nic(hostname="web.cs.lab"), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname="-web"), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname="w" * 64), 400, "hostname: not a valid host name"),
        ("PUT", NIC, nic(hostname=7), 400, "hostname: expected a string"),
        # the NIC itself
        ("PUT", f"{NET}/nics/02:00:0a:01:00", nic(), 400, "mac: not a MAC address"),
        ("PUT", f"{NET}/nics/{MAC}%0A", nic(), 400, "mac: not a MAC address"),
        ("PUT", NIC, nic(mac=MAC2), 400, "mac: 02:00:0a:01:00:06 is not the NIC"),
        ("PUT", NIC, nic(ip="10.2.0.5"), 400, "ip: 10.2.0.5 is outside 10.1.0.0/24"),
        ("PUT", NIC, nic(ip="10.1.0.255"), 400, "broadcast address"),
        ("PUT", NIC, nic(ip="10.1.0.1"), 409, "ip: 10.1.0.1 is network 42's own address"),
        ("PUT", NIC, nic(ip="10.1.0.2"), 409, "ip: 10.1.0.2 is network 42's own address"),
        ("PUT", NIC, nic(ip="10.1.0.5; rm"), 400, "ip: not an IP address"),
        ("PUT", NIC, nic(ip="2001:db8:1::5"), 400, "ip: expected an IPv4 address"),
        ("PUT", NIC, nic(ip6_address="2001:db8:2::5"), 400, "ip6_address: 2001:db8:2::5 is "
         "outside"),
        ("PUT", NIC, nic(gateway="10.1.0.254"), 400, "gateway: 10.1.0.254 is not network 42"),
        ("PUT", NIC, nic(netmask="255.255.0.0"), 400, "netmask: 255.255.0.0 does not match"),
        ("PUT", NIC, nic(netmask="255.0.255.0"), 400, "netmask: not a netmask"),
        ("PUT", NIC, nic(ip6_cidr="2001:db8:9::/64"), 400, "ip6_cidr: 2001:db8:9::/64 is not"),
        ("PUT", NIC, nic(default_nic="yes"), 400, "default_nic: expected true or false"),
        ("PUT", NIC, nic(device_id="1;2"), 400, "device_id: not a valid id"),
        ("PUT", NIC, nic(nic_uuid="../x"), 400, "nic_uuid: not a valid id"),
        ("PUT", NIC, nic(colour="red"), 400, "unknown field 'colour'"),
        ("PUT", NIC, [nic()], 400, "the request body must be a JSON object"),
        ("PUT", f"/v1/networks/99/nics/{MAC}", nic(), 404, "unknown network 99"),
        ("PUT", f"{NIC}/dns", nic(hostname=""), 400, "hostname: a DNS entry needs a host name"),
        ("PUT", f"{NIC}/dhcp", nic(ip=""), 400, "ip: a DHCP entry needs the NIC's IPv4"),
        ("PUT", f"{NIC}/dhcp", {**nic(), "dns": "192.0.2.1,evil"}, 400, "dns: not an IP"),
        ("PUT", f"{NIC}/dns", {**nic(), "domain": "cs.lab;"}, 400, "domain: not a valid"),
        # network services
        ("PUT", f"{NET}/dhcp", {"dns": "192.0.2.1\nserver=x"}, 400, "dns: not an IP address"),
        ("PUT", f"{NET}/dns", {"domain": "a\nb"}, 400, "domain: not a valid domain"),
        ("PUT", f"{NET}/dns", {"nic_id": "1"}, 400, "unknown field 'nic_id'"),
        # VM data: directories, file names (one safe path component)
        ("PUT", f"{NIC}/vm-data", _item(dir="scripts"), 400, "vm_data[0].dir: 'scripts' is not"),
        ("PUT", f"{NIC}/vm-data", _item(file="../etc/passwd"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file="a/b"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file="a..b"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file=".hidden"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file="id\n"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file='id"'), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file="id;x"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file="{id}"), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(file="id\x00"), 400, "holds a NUL character"),
        ("PUT", f"{NIC}/vm-data", _item(file="f" * 65), 400, "vm_data[0].file: use"),
        ("PUT", f"{NIC}/vm-data", _item(dir="userdata", file="x"), 400,
         "vm_data[0]: userdata holds only user_data"),
        ("PUT", f"{NIC}/vm-data", _item(dir="password", file="x"), 400,
         "vm_data[0]: password holds only vm_password"),
        # VM data: contents are text, at most 1 MiB
        ("PUT", f"{NIC}/vm-data", _item(content=5), 400, "content: expected a string"),
        ("PUT", f"{NIC}/vm-data", _item(content=None), 400, "vm_data[0].content: required"),
        ("PUT", f"{NIC}/vm-data", _item(content="a\x00b"), 400, "holds a NUL character"),
        ("PUT", f"{NIC}/vm-data", _item(content="\x1b[2J"), 400, "control character U+001B"),
        ("PUT", f"{NIC}/vm-data", _item(content="\ud800"), 400, "text that is not valid UTF-8"),
        ("PUT", f"{NIC}/vm-data", _item(content=_BIG), 400, "1048577 bytes is more than"),
        ("PUT", f"{NIC}/vm-data", _item(dir="password", file="vm_password", content="a\nb"),
         400, "a password is one or more printable characters without white space"),
        ("PUT", f"{NIC}/vm-data", _item(dir="password", file="vm-password-md5checksum",
                                        content="xyz"), 400, "not a hex MD5 checksum"),
        ("PUT", f"{NIC}/vm-data", {"vm_data": _item()["vm_data"] * 2}, 400, "listed twice"),
        ("PUT", f"{NIC}/vm-data", {"vm_data": [{"dir": "metadata", "file": f"f{i}",
                                                "content": ""} for i in range(65)]}, 400,
         "65 items is more than 64"),
        ("PUT", f"{NIC}/vm-data", {"vm_data": {"dir": "metadata"}}, 400, "expected a JSON list"),
        ("PUT", f"{NIC}/vm-data", {"vm_data": ["x"]}, 400, "vm_data[0]: expected a JSON object"),
        ("PUT", f"{NIC}/vm-data", {"items": []}, 400, "unknown field 'items'"),
        ("PUT", f"{NIC}/vm-data", nic(), 400, "vm_data: required"),
        ("PUT", f"{NIC}/vm-data/password", {"password": "a\rb"}, 400, "password: a password"),
        ("PUT", f"{NIC}/vm-data/password", {"password": ""}, 400, "password: a password"),
        ("PUT", f"{NIC}/vm-data/password", {}, 400, "password: required"),
        ("PUT", f"{NIC}/vm-data/userdata", {"userdata": ["x"]}, 400, "expected a string"),
        ("PUT", f"{NIC}/vm-data/userdata", {"userdata": _BIG}, 400, "userdata: 1048577 bytes"),
        ("PUT", f"{NIC}/vm-data/sshkey", {"sshkey": "k\x07"}, 400, "control character"),
        # passwords: printable, no white space; metadata: no C1 controls or line separators
        *[("PUT", f"{NIC}/vm-data/password", {"password": text}, 400,
           "password: a password is one or more printable characters without white space")
          for text in ("pa ss", "pass\t", "\u00a0pass", "pa\u2009ss", "pa\u200bss",
                       "pa\ufeffss", "pa\u3000ss")],
        *[("PUT", f"{NIC}/vm-data/password", {"password": f"abc{char}x"}, 400,
           f"password: control character U+{ord(char):04X} at offset 3")
          for char in ("\x85", "\x9b", "\u2028", "\u2029")],
        *[("PUT", f"{NIC}/vm-data/hypervisor-hostname", {"hypervisor_hostname": f"kvm{char}"},
           400, f"hypervisor_hostname: control character U+{ord(char):04X} at offset 3")
          for char in ("\x80", "\x85", "\x9f", "\u2028", "\u2029")],
        ("PUT", f"{NIC}/vm-data", _item(content="i-2\x85evil"), 400,
         "vm_data[0].content: control character U+0085 at offset 3"),
        ("PUT", f"{NIC}/vm-data", _item(dir="password", file="vm_password",
                                        content="pa\u2028ss"), 400,
         "vm_data[0].content: control character U+2028"),
        ("PUT", f"{NIC}/vm-data/sshkey", {"password": "x"}, 400, "unknown field 'password'"),
        # restore-network
        ("POST", f"{NET}/restore", {"vms": []}, 400, "dhcp_enabled: required"),
        ("POST", f"{NET}/restore", restore_body(dhcp="yes"), 400,
         "dhcp_enabled: expected true or false"),
        ("POST", "/v1/networks/99/restore", restore_body(), 404, "unknown network 99"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_writes_nothing(
    api: Api, net: Any, app: Flask, method: str, path: str, body: Any, status: int,
    message: str,
) -> None:
    assert message in api.fails(method, path, body, status)
    assert api.ok("GET", f"{NET}/nics") == []
    assert (stored(app, Nic), stored(app, NicVmData), stored(app, NetworkServices)) == (0, 0, 0)


def test_passwords_and_texts_that_are_accepted(api: Api, net: Any, app: Flask) -> None:
    api.ok("PUT", NIC, nic())
    for password in ("s3cret-Pa55", "pässwörd!", "\"'`$;|&<>#{}[]", "密码x"):
        api.ok("PUT", f"{NIC}/vm-data/password", {"password": password})
        assert file_content(app, "password", "vm_password") == password
    # Metadata keeps non-ASCII text; user data, the tenant's own script, is held only to
    # the C0 rule.
    api.ok("PUT", f"{NIC}/vm-data/hypervisor-hostname", {"hypervisor_hostname": "kvm-ü"})
    userdata = "#cloud-config\nwrite_files: [{content: \"a\u2028b\\u0085\"}]\n\t\r\n"
    api.ok("PUT", f"{NIC}/vm-data/userdata", {"userdata": userdata})
    assert file_content(app, "userdata", "user_data") == userdata


def test_restore_parsing_is_linear() -> None:
    """The most NICs a restore may list, parsed in well under a second a few thousand:
    the duplicate-MAC check was quadratic (65536 NICs: 2 billion comparisons)."""
    vms = [{"mac": f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"}
           for i in range(MAX_RESTORE_NICS)]
    flags = {"dhcp_enabled": False, "dns_enabled": False, "userdata_enabled": False}
    started = time.perf_counter()
    spec = parse_restore("42", Body({**flags, "vms": vms}, RESTORE_FIELDS))
    assert len(spec.nics) == MAX_RESTORE_NICS
    assert time.perf_counter() - started < 30  # about 2 s here; quadratic took hours
    vms[-1] = vms[0]
    with pytest.raises(BadRequest, match=r"^vms\[65535\]\.mac: 02:00:00:00:00:00 is listed"):
        parse_restore("42", Body({**flags, "vms": vms}, RESTORE_FIELDS))


# --- lifetime --------------------------------------------------------------------------


def test_destroying_the_network_removes_everything_of_it(
    api: Api, net: Any, app: Flask
) -> None:
    start_vm(api)
    start_vm(api, MAC2, "10.1.0.6", "db-1")
    api.ok("DELETE", NET, status=204)
    assert (stored(app, Nic), stored(app, NicVmData), stored(app, NetworkServices)) == (0, 0, 0)
    assert "unknown network 42" in api.fails("GET", f"{NET}/nics", None, 404)
    api.ok("PUT", NET, {"zone_id": ZONE, "cidr": "10.1.0.0/24", "gateway": "10.1.0.1"})
    assert api.ok("GET", f"{NET}/nics") == []
    assert api.ok("GET", f"{NET}/dhcp")["dhcp_enabled"] is False
