"""The metadata and password server: VR-compatible answers, per source address, once-only
passwords; and the real process on 127.0.0.x (no root needed: its own namespace)."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.dhcp_state import DhcpState
from agent.metadata_process import GLOBAL, MetadataServer, render_config
from agent.metadata_server import (
    Passwords,
    Site,
    VmRecord,
    metadata_answer,
    parse_config,
    password_answer,
)
from tests.unit.dhcp_samples import USER_DATA, ipv4_network, nic, state_json

VM = VmRecord(user_data="#!/bin/sh\necho hi\n",
              metadata={"instance-id": "i-2-101-VM", "vm-id": "101", "public-keys": "k\n"},
              listing=("instance-id", "public-keys", "vm-id"), password="S3cret")


@pytest.mark.parametrize(("path", "expected"), [
    ("/latest/user-data", (200, "#!/bin/sh\necho hi\n")),
    ("/latest/user-data/", (200, "#!/bin/sh\necho hi\n")),
    ("/LATEST/User-Data", (200, "#!/bin/sh\necho hi\n")),
    ("/latest/meta-data/", (200, "instance-id\npublic-keys\nvm-id\n")),
    ("/latest/meta-data", (200, "instance-id\npublic-keys\nvm-id\n")),
    ("/latest/meta-data/instance-id", (200, "i-2-101-VM")),
    ("/latest/meta-data/vm-id?x=1", (200, "101")),
    ("/latest/vm-id", (200, "101")),  # the VR's legacy form
    ("/latest/public-keys", (200, "k\n")),
    ("/latest/meta-data/password", (404, "not found\n")),  # never over port 80
    ("/latest/meta-data/../../etc/passwd", (404, "not found\n")),
    ("/latest/nothing", (404, "not found\n")),
    ("/latest", (200, "meta-data\nuser-data\n")),
    ("/", (200, "latest\n")),
    ("/other/user-data", (404, "not found\n")),
])
def test_metadata_answers(path: str, expected: tuple[int, str]) -> None:
    assert metadata_answer(VM, path) == expected


def test_unknown_source_gets_nothing() -> None:
    assert metadata_answer(None, "/latest/user-data") == (404, "not found\n")
    no_user_data = VmRecord(None, {}, (), None)
    assert metadata_answer(no_user_data, "/latest/user-data")[0] == 404
    assert metadata_answer(no_user_data, "/latest/meta-data/") == (200, "")


def site(password: str | None = "S3cret") -> Site:
    return Site("201", None, ("10.10.1.1",), {"10.10.1.11": VmRecord(None, {}, (), password)})


def test_password_is_served_once_and_survives_a_reload(tmp_path: Path) -> None:
    passwords = Passwords(tmp_path / "served.json")
    passwords.load((site(),))
    ask = "send_my_password"
    assert password_answer(passwords, site(), "10.10.1.11", ask) == "S3cret"
    assert password_answer(passwords, site(), "10.10.1.11", ask) == "saved_password"
    assert password_answer(passwords, site(), "10.10.1.11", "saved_password") == "saved_password"
    passwords.load((site(),))  # the agent reloads with the same password: not served again
    assert password_answer(passwords, site(), "10.10.1.11", ask) == "saved_password"
    restarted = Passwords(tmp_path / "served.json")  # nor after a restart
    restarted.load((site(),))
    assert password_answer(restarted, site(), "10.10.1.11", ask) == "saved_password"
    assert "S3cret" not in (tmp_path / "served.json").read_text()
    restarted.load((site("N3w-one"),))  # a password reset is served again
    assert password_answer(restarted, site(), "10.10.1.11", ask) == "N3w-one"


def test_password_acknowledged_before_fetch_is_dropped(tmp_path: Path) -> None:
    passwords = Passwords(tmp_path / "served.json")
    passwords.load((site(),))
    password_answer(passwords, site(), "10.10.1.11", "saved_password")
    assert password_answer(passwords, site(), "10.10.1.11", "send_my_password") == \
        "saved_password"


@pytest.mark.parametrize("request_header", [None, "", "send_my_password ", "give_me_all"])
def test_password_bad_requests(tmp_path: Path, request_header: str | None) -> None:
    passwords = Passwords(tmp_path / "served.json")
    passwords.load((site(),))
    assert password_answer(passwords, site(), "10.10.1.11", request_header) == "bad_request"
    assert password_answer(passwords, site(), "10.10.1.11", "send_my_password") == "S3cret"


def test_other_addresses_never_get_the_password(tmp_path: Path) -> None:
    passwords = Passwords(tmp_path / "served.json")
    passwords.load((site(),))
    assert password_answer(passwords, site(), "10.10.1.12", "send_my_password") == \
        "saved_password"
    assert password_answer(passwords, None, "10.10.1.11", "send_my_password") == \
        "saved_password"


def test_render_config_is_deterministic_and_parses() -> None:
    desired = DhcpState.from_json(state_json())
    config = render_config(desired)
    assert config == render_config(DhcpState.from_json(state_json()))
    parsed = parse_config(config.text)
    assert parsed.digest == config.digest and parsed.http_port == 80
    assert [s.network_id for s in parsed.sites] == ["201", "202", "203"]
    vm = parsed.sites[0].vms["10.10.1.11"]
    assert vm.user_data == USER_DATA and vm.password == "Ch4ngeMe-1"
    assert vm.metadata["vm-id"] == "101" and parsed.sites[0].netns == "vxr-1001"
    assert parsed.sites[0].addresses == ("10.10.1.1",)


# --- the real process, in this namespace, on loopback addresses -----------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def loopback_state(vms: int) -> DhcpState:
    network = ipv4_network()
    network.update(cidr="127.0.0.0/24", gateway="127.0.0.1")
    network["nics"] = [nic(i, prefix="127.0.0", ip=f"127.0.0.{1 + i}") for i in range(1, vms + 1)]
    network["nics"][0]["password"] = "Ch4ngeMe-1"
    return DhcpState.from_json(state_json(network))


class Client:
    def __init__(self, ports: tuple[int, int]) -> None:
        self.http_port, self.password_port = ports

    def get(self, source: str, path: str, port: int | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port or self.http_port, timeout=5,
                                                source_address=(source, 0))
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def password(self, source: str, request: str) -> str:
        return self.get(source, "/", self.password_port, {"DomU_Request": request})[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[MetadataServer, Client, dict[str, Any]]]:
    process = MetadataServer(tmp_path / "metadata")
    ports = (free_port(), free_port())
    try:
        yield process, Client(ports), {"http_port": ports[0], "password_port": ports[1],
                                       "own_netns": True}
    finally:
        process.stop()
        assert process.running() is None


def test_real_server_serves_each_vm_its_own_data(
        server: tuple[MetadataServer, Client, dict[str, Any]]) -> None:
    process, client, options = server
    assert process.apply(render_config(loopback_state(2), **options)) == {}
    pid = process.running()
    assert pid is not None
    assert client.get("127.0.0.2", "/latest/user-data") == (200, USER_DATA)
    assert client.get("127.0.0.3", "/latest/meta-data/local-hostname") == (200, "vm2")
    assert client.get("127.0.0.2", "/latest/meta-data/instance-id") == (200, "i-2-101-VM")
    assert client.get("127.0.0.9", "/latest/user-data")[0] == 404
    assert client.password("127.0.0.3", "send_my_password") == "saved_password"
    assert client.password("127.0.0.2", "send_my_password") == "Ch4ngeMe-1"
    assert client.password("127.0.0.2", "send_my_password") == "saved_password"
    assert client.password("127.0.0.2", "bogus") == "bad_request"
    # A VM added later: the same process reloads, serves it, and the old password stays
    # served.
    assert process.apply(render_config(loopback_state(3), **options)) == {}
    assert process.running() == pid
    assert client.get("127.0.0.4", "/latest/meta-data/vm-id") == (200, "103")
    assert client.password("127.0.0.2", "send_my_password") == "saved_password"
    config = (process.state_dir / "config.json")
    assert config.stat().st_mode & 0o077 == 0  # it holds passwords


def test_real_server_reports_an_address_it_cannot_bind(
        server: tuple[MetadataServer, Client, dict[str, Any]]) -> None:
    process, client, options = server
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", client.password_port))
        squatter.listen()
        errors = process.apply(render_config(loopback_state(1), **options))
    assert list(errors) == ["201"]
    assert errors["201"].startswith(f"cannot listen on 127.0.0.1:{client.password_port} in "
                                    "own namespace: Address already in use")
    assert client.get("127.0.0.2", "/latest/vm-id") == (200, "101")  # port 80 still serves


def test_real_server_start_failure_is_reported(tmp_path: Path) -> None:
    process = MetadataServer(tmp_path / "metadata", python="/bin/false")
    errors = process.apply(render_config(loopback_state(1)))
    assert list(errors) == [GLOBAL] and "exited with 1" in errors[GLOBAL]
