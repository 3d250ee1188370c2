"""The CloudStack stand-in's parameters and signatures, without HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cs import CloudStack

from simulator.cloudstack import signing
from simulator.cloudstack.params import ApiError, Params

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _params(**values: str) -> Params:
    return Params("createNetwork", values.items())


def _error(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(ApiError) as raised:
        call()
    return raised.value.code, raised.value.text


def test_plain_names_are_case_insensitive_and_reserved_ones_left_out() -> None:
    params = Params("echo", [("zoneId", "1"), ("ZONEID", "2"), ("apiKey", "k"),
                             ("signature", "s"), ("command", "echo"), ("response", "json")])
    assert params.as_dict() == {"zoneid": "1"}
    assert params.text("ZoneId") == "1" and "zoneid" in params and "apikey" not in params
    assert params.text("name", "default") == "default"


def test_maps_in_both_forms_and_indexed_lists_by_index() -> None:
    pairs = [("details[1].rootDiskController", "scsi"), ("Details[0].cpuNumber", "2"),
             ("tags[0].key", "owner"), ("tags[0].value", "ops"),
             *((f"list[{index}].service", f"S{index}") for index in (10, 2, 0))]
    params = Params("createNetwork", pairs)
    assert params.map("details") == {"cpuNumber": "2", "rootDiskController": "scsi"}
    assert params.map("TAGS") == {"owner": "ops"}
    assert params.indexed("list") == [{"service": "S0"}, {"service": "S2"}, {"service": "S10"}]
    assert params.map("absent") == {} and params.indexed("absent") == []


@pytest.mark.parametrize("name", ["details[0]", "details[x].a", "a[0][1].b", "[0].a",
                                  "details[0]."])
def test_malformed_array_names_are_430(name: str) -> None:
    assert _error(lambda: Params("echo", [(name, "v")]))[0] == 430


def test_typed_values() -> None:
    params = _params(vlan="42", flag="TRUE", services="Dhcp,,Dns,", blank="")
    assert params.integer("vlan") == 42 and params.integer("absent", 7) == 7
    assert params.boolean("flag", False) and params.boolean("blank", True)
    assert params.csv("services") == ["Dhcp", "Dns"] and params.csv("absent") == []
    assert params.required("vlan") == "42"


@pytest.mark.parametrize(("call", "expected"), [
    (lambda p: p.required("blank"),
     "Unable to execute API command createnetwork due to missing parameter blank"),
    (lambda p: p.integer("flag"), "Unable to execute API command createnetwork due to "
                                  "invalid value. Invalid parameter flag value=yes due to "
                                  "incorrect long value format"),
    (lambda p: p.boolean("flag", True), "Unable to execute API command createnetwork due to "
                                        "invalid value. Invalid parameter flag value=yes due "
                                        "to incorrect boolean value format"),
])
def test_bad_values_are_431(call: Callable[[Params], object], expected: str) -> None:
    params = _params(flag="yes", blank="")
    assert _error(lambda: call(params)) == (431, expected)


def _signed_by_cs(**values: str) -> dict[str, str]:
    params = {"command": "echo", "apiKey": "key", "response": "json", **values}
    CloudStack("http://unused", "key", "secret")._sign(params)
    return params


def test_signatures_as_the_cs_client_makes_them() -> None:
    params = _signed_by_cs(name="a b+c/d=e&f 日本", zoneId="1", zone_x="2")
    assert signing.signature(params, "secret") == params["signature"]
    assert signing.refusal(params, {"key": "secret"}, NOW) == ""
    assert signing.refusal(params, {"key": "other"}, NOW) == "wrong signature"
    assert signing.refusal(params, {}, NOW) == "unknown apiKey"


def test_java_encodes_the_tilde_which_cs_does_not() -> None:
    assert signing.java_url_encode("~ *") == "%7E%20*"
    params = _signed_by_cs(name="~user")
    assert signing.signature(params, "secret") != params["signature"]
    assert signing.refusal(params, {"key": "secret"}, NOW) == ""


@pytest.mark.parametrize(("expires", "reason"), [
    ("2031-01-01T00:00:00+0000", ""),
    ("2029-12-31T23:59:59+0000", "the request expired at 2029-12-31T23:59:59+0000"),
    ("tomorrow", "expires 'tomorrow' is not yyyy-MM-dd'T'HH:mm:ssZ"),
])
def test_version_3_expiry(expires: str, reason: str) -> None:
    params = _signed_by_cs(signatureVersion="3", expires=expires)
    assert signing.refusal(params, {"key": "secret"}, NOW) == reason
