"""Validators: what they accept, and the one-line errors for what they refuse."""

from __future__ import annotations

import pytest

from provider_service import validation as v
from provider_service.errors import BadRequest


@pytest.mark.parametrize(
    ("value", "expected"),
    [("80", (80, 80)), (443, (443, 443)), ("8000-8100", (8000, 8100)), (" 22 ", (22, 22))],
)
def test_port_ranges(value: object, expected: tuple[int, int]) -> None:
    assert v.parse_port_range(value, "port") == expected


@pytest.mark.parametrize("value", ["0", "65536", "90-80", "80-", "a", True, None, "1-2-3"])
def test_bad_port_ranges(value: object) -> None:
    with pytest.raises(BadRequest, match=r"^port: "):
        v.parse_port_range(value, "port")


@pytest.mark.parametrize(
    "value",
    ["web01", "a", "x" * 63, "a-b"],
)
def test_hostnames(value: str) -> None:
    assert v.parse_hostname(value, "hostname") == value


@pytest.mark.parametrize(
    "value",
    ["-a", "a-", "a.b", "a b", "a\nb", "a;b", 'a"b', "{a}", "x" * 64, "", "a\x00"],
)
def test_hostnames_that_could_inject_are_refused(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        v.parse_hostname(value, "hostname")
    assert "\n" not in str(info.value)


def test_domains() -> None:
    assert v.parse_domain("cs1.cloud.example.", "domain") == "cs1.cloud.example"
    assert v.parse_domain("", "domain") == ""
    for bad in ("a..b", "a b.c", "x;y.z", "a\n.b", "-a.b"):
        with pytest.raises(BadRequest):
            v.parse_domain(bad, "domain")


def test_gateway_must_be_a_usable_host() -> None:
    cidr = v.parse_cidr("10.0.0.0/24", "cidr")
    v.gateway_in_cidr(v.parse_ip("10.0.0.1", "gw"), cidr, "gw")
    for bad in ("10.0.1.1", "10.0.0.0", "10.0.0.255"):
        with pytest.raises(BadRequest, match=r"^gw: "):
            v.gateway_in_cidr(v.parse_ip(bad, "gw"), cidr, "gw")


def test_flags_as_cloudstack_sends_them() -> None:
    assert v.parse_bool("true", "f") is True
    assert v.parse_bool("False", "f") is False
    assert v.parse_bool(True, "f") is True
    with pytest.raises(BadRequest):
        v.parse_bool("yes", "f")


def test_ids_and_dns_lists() -> None:
    assert v.parse_id(42, "id") == "42"
    assert v.parse_id("8f1c-aa", "id") == "8f1c-aa"
    for bad in ("", "../x", "a/b", "a b", "x" * 65, None, 1.5):
        with pytest.raises(BadRequest):
            v.parse_id(bad, "id")
    assert v.parse_dns_list("192.0.2.1, 192.0.2.2,", "dns") == ["192.0.2.1", "192.0.2.2"]
    assert v.parse_mac("02:00:0A:01:00:05", "mac") == "02:00:0a:01:00:05"


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(BadRequest) as info:
        v.parse_cidr("x" * 5000, "cidr")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("value", ["²", "١٢", "1e3", " ", "99999999999999999999999"])
def test_numbers_are_ascii_digits_only(value: str) -> None:
    with pytest.raises(BadRequest, match=r"^n: "):
        v.parse_int(value, "n", 0, 10**6)


def test_trailing_newlines_never_pass_a_pattern() -> None:
    from provider_service.api import rule_parsing

    for parse in (v.parse_hostname, v.parse_mac, v.parse_id, v.parse_name,
                  rule_parsing.parse_vlan):
        with pytest.raises(BadRequest):
            parse("101\n" if parse is not v.parse_mac else "02:00:00:00:00:01\n", "f")
    with pytest.raises(BadRequest):
        rule_parsing.parse_signed_int("-1\n", "icmp", -1, 255)
    assert rule_parsing.parse_signed_int(" -1 ", "icmp", -1, 255) == -1
    assert rule_parsing.parse_acl_protocol("6", "protocol") == "6"
    with pytest.raises(BadRequest):
        rule_parsing.parse_acl_protocol("²", "protocol")
