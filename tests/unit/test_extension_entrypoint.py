"""The entry-point's own functions: arguments, legacy envelopes, secrets, URLs, HTTP answers.

Imported, not spawned (tests/functional/test_extension_commands.py spawns it); the few
tests that talk HTTP use an in-process listener on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from plugin import plugin_legacy as legacy
from plugin import vxgate_extension as ext
from tests import cloudstack_payloads as cp

DETAILS = {"vxgate.url": "http://127.0.0.1:8640", "vxgate.token": "t0ken-0123456789",
           "password": "pw", "sshkey": "key", "api.secret": "s", "hosts": "192.0.2.10",
           "physicalnetworkname": "guest"}


# --- arguments -------------------------------------------------------------------------


def test_gson_escapes_as_cloudstack_writes_the_file() -> None:
    assert cp.gson({"cidrs": "10.0.0.0/8", "data": "a=b <c> & 'd' é"}) == \
        '{"cidrs":"10.0.0.0/8","data":"a\\u003db \\u003cc\\u003e \\u0026 \\u0027d\\u0027 é"}'


@pytest.mark.parametrize("argv", [
    ["vxgate_extension.py"], ["vxgate_extension.py", "implement-network"],
    ["vxgate_extension.py", "--help", "x"], ["vxgate_extension.py", "Implement Network", "x"],
    ["vxgate_extension.py", "a\r\nHost: evil", "x"],
])
def test_bad_arguments_are_a_usage_error_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert ext.main(argv) == ext.EXIT_USAGE
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("vxgate: ") and "usage:" in out
    assert "evil" not in out


def test_payload_file_form_reads_the_envelope_and_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "cs-extnet-assign-ip-1.payload"
    path.write_text(cp.gson({"physical-network-extension-details": DETAILS,
                             "payload": {"cidr": "10.1.0.0/24", "user": "a=b<c>&'d'"}}))
    assert "\\u003d" in path.read_text()  # Gson's escapes, undone by any JSON parser
    event, timeout = ext.read_event("assign-ip", [str(path), "60"])
    assert event["payload"] == {"cidr": "10.1.0.0/24", "user": "a=b<c>&'d'"}
    assert timeout == 60.0
    assert ext.read_event("assign-ip", [str(path)])[1] == ext.DEFAULT_TIMEOUT


@pytest.mark.parametrize(("text", "seconds"), [
    ("60", 60.0), ("1", 1.0), ("0.5", 0.5), ("", 60.0), ("0", 60.0), ("-3", 60.0),
    ("99999", 60.0), ("nan", 60.0), ("inf", 60.0),
])
def test_timeout_argument(text: str, seconds: float) -> None:
    assert ext._timeout(text) == seconds


def test_unreadable_or_malformed_payload_file(tmp_path: Path) -> None:
    with pytest.raises(ext.Failure, match="cannot read payload file"):
        ext.read_event("assign-ip", [str(tmp_path / "gone.payload"), "60"])
    (tmp_path / "bad.payload").write_bytes(b"\xff{")
    with pytest.raises(ext.Failure, match="not JSON"):
        ext.read_event("assign-ip", [str(tmp_path / "bad.payload"), "60"])
    (tmp_path / "list.payload").write_text("[1]")
    with pytest.raises(ext.Failure, match="not a JSON object"):
        ext.read_event("assign-ip", [str(tmp_path / "list.payload"), "60"])
    with pytest.raises(ext.Failure, match="not a number") as error:
        ext.read_event("assign-ip", [str(tmp_path / "list.payload"), "sixty"])
    assert error.value.code == ext.EXIT_USAGE


# --- the legacy flag form --------------------------------------------------------------


def _file(tmp_path: Path, data: object) -> str:
    path = tmp_path / "cs-extnet-x.payload"
    path.write_bytes(base64.b64encode(json.dumps(data).encode()))
    return str(path)


def test_legacy_flags_become_the_payload_of_the_file_form(tmp_path: Path) -> None:
    network = {"zone_id": "1", "network_id": "42"}
    envelope = legacy.legacy_envelope("assign-ip", [
        "--network-id", "42", "--vlan", "", "--public-ip", "203.0.113.5",
        "--source-nat", "true", "--public-cidr", "203.0.113.5/24",
        "--physical-network-extension-details", json.dumps(DETAILS),
        "--network-extension-details", json.dumps(network)])
    assert envelope == {"physical-network-extension-details": DETAILS,
                        "network-extension-details": network,
                        "payload": {"network_id": "42", "vlan": "", "public_ip": "203.0.113.5",
                                    "source_nat": "true", "public_cidr": "203.0.113.5/24"}}
    # Through the entry-point's own reader, with the default deadline.
    assert ext.read_event("assign-ip", ["--network-id", "42"]) == (
        {"physical-network-extension-details": {}, "network-extension-details": {},
         "payload": {"network_id": "42"}}, ext.DEFAULT_TIMEOUT)


def test_legacy_files_and_base64_values_are_unpacked(tmp_path: Path) -> None:
    vm_data = [{"dir": "userdata", "file": "user_data",
                "content": base64.b64encode(b"#cloud-config\na: b=c\n").decode()},
               {"dir": "metadata", "file": "vm-id", "content": base64.b64encode(b"17").decode()}]
    payload = legacy.legacy_envelope("save-vm-data", [
        "--ip", "10.1.0.5", "--vm-data-file", _file(tmp_path, vm_data)])["payload"]
    assert payload == {"ip": "10.1.0.5", "vm_data": [
        {"dir": "userdata", "file": "user_data", "content": "#cloud-config\na: b=c\n"},
        {"dir": "metadata", "file": "vm-id", "content": "17"}]}
    rules = {"default_egress_allow": True, "cidr": "10.1.0.0/24", "rules": []}
    assert legacy.legacy_envelope("apply-fw-rules", [
        "--fw-rules-file", _file(tmp_path, rules)])["payload"] == {"fw_rules": rules}
    assert legacy.legacy_envelope("save-userdata", [
        "--userdata", base64.b64encode("héllo=".encode()).decode(),
        "--lb-rules", "[]"])["payload"] == {"userdata": "héllo=", "lb_rules": []}


def test_legacy_custom_action_is_flat() -> None:
    assert legacy.legacy_envelope("custom-action", [
        "--network-id", "42", "--action", "show", "--action-params", '{"a": "1"}',
        "--physical-network-extension-details", "{}"]) == {
        "physical-network-extension-details": {}, "network-extension-details": {},
        "network_id": "42", "action": "show", "action-params": {"a": "1"}}


@pytest.mark.parametrize(("args", "message"), [
    (["--network-id"], "has no value"),
    (["--network-id", "42", "-x", "1"], "expected a --flag"),
    (["--lb-rules", "[nope"], "--lb-rules is not JSON"),
    (["--sshkey", "not base64!"], "not base64"),
    (["--fw-rules-file", "/nonexistent/cs-extnet.payload"], "cannot read"),
])
def test_legacy_errors_are_one_line(args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        legacy.legacy_envelope("apply-lb-rules", args)
    with pytest.raises(ext.Failure, match="legacy arguments") as error:
        ext.read_event("apply-lb-rules", args)
    assert error.value.code == ext.EXIT_USAGE and "\n" not in str(error.value)


# --- secrets ---------------------------------------------------------------------------


def test_without_secrets_keeps_the_payload_and_drops_credentials() -> None:
    event: dict[str, object] = {"physical-network-extension-details": dict(DETAILS),
             "network-extension-details": {"host": "sg-1", "ssh.key": "k"},
             "payload": {"password": "vm-password", "sshkey": "ssh-ed25519 AAAA"}}
    clean = ext.without_secrets(event)
    assert clean["physical-network-extension-details"] == {
        "vxgate.url": "http://127.0.0.1:8640", "hosts": "192.0.2.10",
        "physicalnetworkname": "guest"}
    assert clean["network-extension-details"] == {"host": "sg-1"}
    assert clean["payload"] == event["payload"]  # the VM's own password is the command
    assert event["physical-network-extension-details"] == DETAILS  # not changed in place


@pytest.mark.parametrize(("details", "message"), [
    (None, "physical-network-extension-details missing"),
    ({"vxgate.token": "t0ken-0123456789"}, "vxgate.url is not set"),
    ({"vxgate.url": "http://127.0.0.1:1"}, "vxgate.token is not set"),
    ({"vxgate.url": "http://127.0.0.1:1", "vxgate.token": "two words"}, "not a valid token"),
    ({"vxgate.url": "ftp://127.0.0.1", "vxgate.token": "t0ken"}, "http:// or https://"),
])
def test_send_refuses_unusable_registrations(details: object, message: str) -> None:
    with pytest.raises(ext.Failure, match=message):
        ext.send("ensure-network-device", {"physical-network-extension-details": details},
                 time.monotonic() + 5)


# --- URLs and HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "parts"), [
    ("http://vxgate.example:8640", ("http", "vxgate.example", 8640, "")),
    ("http://192.0.2.10", ("http", "192.0.2.10", 80, "")),
    ("https://vxgate.example/", ("https", "vxgate.example", 443, "")),
    ("https://vxgate.example:8443/api/", ("https", "vxgate.example", 8443, "/api")),
    ("http://[2001:db8::1]:8640/x", ("http", "2001:db8::1", 8640, "/x")),
    ("http://[2001:db8::1]", ("http", "2001:db8::1", 80, "")),
])
def test_split_url(url: str, parts: tuple[str, str, int, str]) -> None:
    assert ext._split_url(url) == parts


@pytest.mark.parametrize("url", ["vxgate.example:8640", "ftp://x", "http://host:port"])
def test_split_url_refuses(url: str) -> None:
    with pytest.raises(ext.Failure, match=r"vxgate\.url"):
        ext._split_url(url)


@pytest.mark.parametrize(("response", "parsed"), [
    (b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"output":null}', (200, {"output": None})),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b'5\r\n{"out\r\nA;ext=1\r\nput":"ok"}\r\n0\r\n\r\n', (200, {"output": "ok"})),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", (200, {})),
    (b'HTTP/1.0 404 NOT FOUND\r\n\r\n{"error":"unknown command"}',
     (404, {"error": "unknown command"})),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>proxy</html>", (502, None)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", (204, None)),
])
def test_parse_response(response: bytes, parsed: tuple[int, object]) -> None:
    assert ext._parse_response(response) == parsed


@pytest.mark.parametrize("response", [
    b"", b"garbage", b"HTTP/1.1 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
])
def test_malformed_responses_are_a_failure(response: bytes) -> None:
    with pytest.raises(ext.Failure, match="malformed"):
        ext._parse_response(response)


def test_error_text() -> None:
    assert ext._error_text(400, {"error": "payload.cidr: required"}) == \
        "payload.cidr: required (HTTP 400)"
    assert ext._error_text(502, None) == "the vxgate service answered HTTP 502"


def test_post_sends_one_request_and_reads_the_answer() -> None:
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"output":"x"}'
    with cp.fake_service(answer) as (url, requests):
        assert ext.post(url + "/base", "/v1/cloudstack/prepare-nic", "t0ken", b'{"a":1}',
                        time.monotonic() + 5) == (200, {"output": "x"})
    head, _, body = requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /base/v1/cloudstack/prepare-nic HTTP/1.1"
    assert {"Authorization: Bearer t0ken", "Content-Length: 7", "Connection: close",
            f"Host: {url.removeprefix('http://')}"} <= set(lines)
    assert body == b'{"a":1}'


def test_post_gives_up_at_the_deadline_with_124() -> None:
    with cp.fake_service(None) as (url, _requests):
        started = time.monotonic()
        with pytest.raises(ext.Failure, match="before the deadline") as error:
            ext.post(url, "/v1/cloudstack/x", "t0ken", b"{}", started + 0.3)
    assert error.value.code == ext.EXIT_TIMEOUT
    assert 0.25 < time.monotonic() - started < 2


def test_main_prints_the_answer_and_nothing_else(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    answer = b'HTTP/1.1 200 OK\r\n\r\n{"output":{"status":"success","network.broadcast_uri":' \
             b'"vxlan://10001"}}'
    with cp.fake_service(answer) as (url, _requests):
        details = {**DETAILS, "vxgate.url": url}
        path = tmp_path / "cs-extnet-implement-network-1.payload"
        path.write_text(cp.gson({"physical-network-extension-details": details,
                                 "network-extension-details": {}, "payload": {}}))
        assert ext.main(["vxgate_extension.py", "implement-network", str(path), "5"]) == 0
    assert capsys.readouterr().out == \
        '{"status":"success","network.broadcast_uri":"vxlan://10001"}\n'
