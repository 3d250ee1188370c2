"""`vxgate cloudstack audit`'s options and failures: one line, exit 2, no secret."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from provider_service import audit_cli, cli, registration_cli
from provider_service import cloudstack_registration as reg

SECRET = "s3cr3t-api-secret"
ENV = {"CLOUDSTACK_ENDPOINT": "http://cs.invalid/client/api", "CLOUDSTACK_KEY": "apikey-1",
       "CLOUDSTACK_SECRET": SECRET, "VXGATE_ADMIN_TOKEN": "t" * 32}


class Refusing:
    def call(self, command: str, params: Any) -> dict[str, Any]:
        raise reg.CloudStackError(f"{command}: unable to verify user credentials {SECRET}")

    def list_all(self, command: str, params: Any) -> list[dict[str, Any]]:
        raise reg.CloudStackError(f"{command}: unable to verify user credentials {SECRET}")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()


    registration_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["cloudstack", "audit", *argv])


def empty_service(method: str, path: str, body: Any) -> Any:
    return []


@pytest.mark.parametrize("argv, message", [
    (("--every", "0"), "--every must be a positive number of seconds"),
    (("--passes", "2"), "--passes needs --every and a count of at least 1"),
    (("--every", "5", "--json"), "--every prints one line per pass; it does not take --json"),
])
def test_bad_options_are_one_line(argv: tuple[str, ...], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = audit_cli.run(parse(*argv), environ=ENV, request=empty_service,
                         cloudstack_factory=lambda *a: Refusing())
    assert (code, capsys.readouterr().err) == (2, f"vxgate: cloudstack audit: {message}\n")


def test_cloudstack_refusing_is_exit_2_without_the_secret(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = audit_cli.run(parse(), environ=ENV, request=empty_service,
                         cloudstack_factory=lambda *a: Refusing())
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == "vxgate: cloudstack audit: listZones: unable to verify user credentials ***\n"


def test_missing_credentials_name_the_option(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["cloudstack", "audit"]) == 2
    assert capsys.readouterr().err == ("vxgate: cloudstack audit: no CloudStack endpoint: "
                                       "pass --endpoint or set CLOUDSTACK_ENDPOINT\n")


class Listing:
    """Just enough of CloudStack's list answers for the LB members' addresses."""

    def list_all(self, command: str, params: Any) -> list[dict[str, Any]]:
        answers: dict[str, list[dict[str, Any]]] = {
            "listVirtualMachines": [{"id": "vm1", "nic": [
                {"networkid": "n2", "ipaddress": "10.0.2.9"},
                {"networkid": "n1", "ipaddress": "10.0.1.2"}]}],
            "listLoadBalancerRules": [{"id": "lb1", "networkid": "n1"}],
            "listLoadBalancerRuleInstances": [{"id": "vm1", "name": "vm1"}]
            if params.get("id") == "lb1" else []}
        return answers.get(command, [])


def test_load_balancer_members_are_their_vms_addresses_on_its_network() -> None:
    view = audit_cli.fetch_cloudstack(Listing())  # type: ignore[arg-type]
    assert view.load_balancers == [{"id": "lb1", "networkid": "n1",
                                    "memberips": ["10.0.1.2"]}]
