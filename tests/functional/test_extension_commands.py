"""Every CloudStack command through the real entry-point, against a running service.

Each of dispatch.COMMANDS and custom-action gets a realistic payload, run as CloudStack
runs it (ensure-network-device first, then `vxgate_extension.py <command> <file> 60`): it
must exit 0 with the output CloudStack reads, and a replay must change nothing the REST
API shows and no device's rendered config (a SoftGate's and a hypervisor's: the same text
under the same generation). Then the failures (one line, no traceback, 124 on timeout)
and the secrets. The legacy flag form is in test_extension_sequences.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from bench.service import Service, free_port
from provider_service.cloudstack.dispatch import COMMANDS
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import CloudStack, Json, Net, Nic, PublicIp, Registration, Vpc


@dataclass(frozen=True)
class Step:
    """The payload, the network or VPC it is about, and `check(output, what the REST API
    shows about that network or VPC)`."""

    payload: Json
    on: Net | Vpc
    check: Callable[[str, Any], None]


@dataclass
class Case:
    """Set-up through the entry-point, without the ensures; case i owns network 100+i,
    VPC 700+i with tier 800+i, and 203.0.113.(10+3i+k)."""

    cs: CloudStack
    i: int

    def net(self) -> Net:
        return Net(str(100 + self.i), f"10.{self.i}.0.0/24", f"10.{self.i}.0.1")

    def implemented(self, net: Net | None = None) -> Net:
        net = net or self.net()
        output = self.cs.ok("implement-network", cp.implement_network(net), net, ensure=False)
        vni = json.loads(output)["network.broadcast_uri"].removeprefix("vxlan://")
        return replace(net, vlan=vni)

    def vpc(self, snat: PublicIp | None = None) -> Vpc:
        vpc = Vpc(str(700 + self.i), f"10.{100 + self.i}.0.0/16")
        self.cs.ok("implement-vpc", {**cp.V(vpc), **(cp.PIP(snat, True) if snat else {})}, vpc)
        return vpc

    def tier(self, vpc: Vpc) -> Net:
        base = f"10.{100 + self.i}.1"
        return self.implemented(Net(str(800 + self.i), f"{base}.0/24", f"{base}.1", vpc=vpc))

    def ip(self, k: int = 0) -> PublicIp:
        return PublicIp(f"203.0.113.{10 + 3 * self.i + k}")

    def assigned(self, net: Net, k: int = 0) -> PublicIp:
        self.cs.ok("assign-ip", cp.public_ip(net, self.ip(k), False), net, ensure=False)
        return self.ip(k)

    def nic(self, net: Net, k: int = 0) -> Nic:
        return Nic(str(1000 + 10 * self.i + k), f"02:00:0a:{self.i:02x}:00:{k + 5:02x}",
                   f"{net.cidr.rsplit('.', 1)[0]}.{k + 5}", net.gateway,
                   uuid=f"5b0e7c1a-0000-4000-8000-{self.i:06d}{k:06d}", device_id=str(k))

    def vm(self, net: Net, k: int = 0) -> Nic:
        nic = self.nic(net, k)
        self.cs.ok("prepare-nic", cp.prepare_nic(net, nic, f"web-{k}"), net, ensure=False)
        return nic

    def setup(self, command: str, payload: Json, on: Net) -> None:
        self.cs.ok(command, payload, on, ensure=False)


def files(nic: Json) -> dict[str, str]:
    return {f"{item['dir']}/{item['file']}": item["content"] for item in nic["vm_data"]}


def equal(expected: object, part: Callable[[Any], object] = lambda st: st
          ) -> Callable[[str, Any], None]:
    def check(_output: str, state: Any) -> None:
        assert part(state) == expected

    return check


USERDATA = "#cloud-config\nruncmd:\n - [sh, -c, 'echo a=b > /tmp/x && echo <ok>']\n"
SSHKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMx+y/k= admin@example"
CASES: dict[str, Callable[[Case], Step]] = {}


def case(build: Callable[[Case], Step]) -> Callable[[Case], Step]:
    CASES[build.__name__.replace("_", "-")] = build
    return build


# --- the cases, one per command --------------------------------------------------------


@case
def ensure_network_device(x: Case) -> Step:
    net = x.implemented()
    return Step(cp.ensure_network(net), net, lambda out, _: _is(
        json.loads(out)["broadcast_uri"], f"vxlan://{net.vlan}"))


@case
def implement_network(x: Case) -> Step:
    net = x.net()

    def check(output: str, state: Json) -> None:
        network = state["network"]
        assert json.loads(output) == {"status": "success",
                                      "network.broadcast_domain_type": "Vxlan",
                                      "network.broadcast_uri": network["broadcast_uri"]}
        assert (network["state"], network["extension_ip"]) == ("implemented", net.gateway)

    return Step(cp.implement_network(replace(net, state="implementing")), net, check)


@case
def shutdown_network(x: Case) -> Step:
    net = x.implemented()
    return Step(cp.N(replace(net, state="shutdown")), net,
                equal("shutdown", lambda st: st["network"]["state"]))


@case
def destroy_network(x: Case) -> Step:
    net = x.implemented()
    x.setup("assign-ip", cp.public_ip(net, x.ip(), True), net)
    x.vm(net)
    return Step(cp.N(replace(net, state="allocated")), net, equal(404))


@case
def implement_vpc(x: Case) -> Step:
    vpc = Vpc(str(700 + x.i), "10.130.0.0/16")
    return Step({**cp.V(vpc), **cp.PIP(x.ip(), True)}, vpc, equal(
        (vpc.cidr, [(x.ip().address, True, vpc.id)]), lambda st: (st["vpc"]["cidr"], [
            (ip["address"], ip["source_nat"], ip["vpc_id"]) for ip in st["public_ips"]])))


@case
def shutdown_vpc(x: Case) -> Step:
    vpc = x.vpc(x.ip())  # deleteVPC: CloudStack marks the VPC Inactive first
    return Step(cp.V(replace(vpc, state="Inactive")), vpc,
                equal({"vpc": 404, "public_ips": []}))


@case
def update_vpc_source_nat_ip(x: Case) -> Step:
    vpc = x.vpc(x.ip(0))
    return Step({**cp.V(vpc), **cp.PIP(x.ip(1), True)}, vpc, equal(
        {x.ip(0).address: False, x.ip(1).address: True},
        lambda st: {ip["address"]: ip["source_nat"] for ip in st["public_ips"]}))


@case
def assign_ip(x: Case) -> Step:
    net = x.implemented()
    return Step(cp.public_ip(net, x.ip(), True), net, equal([{
        "zone_id": "1", "address": x.ip().address, "network_id": net.id, "vpc_id": None,
        "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "vlan": "vlan://101",
        "source_nat": True, "static_nat": None, "port_forwards": []}],
        lambda st: st["public_ips"]))


@case
def release_ip(x: Case) -> Step:
    net = x.implemented()
    return Step(cp.public_ip(net, x.assigned(net), False), net,
                equal([], lambda st: st["public_ips"]))


@case
def add_static_nat(x: Case) -> Step:
    net = x.implemented()
    ip, nic = x.assigned(net), x.vm(net)
    return Step(cp.static_nat(net, ip, nic.ip), net, equal(
        {"public_ip": ip.address, "network_id": net.id, "private_ip": nic.ip},
        lambda st: st["public_ips"][0]["static_nat"]))


@case
def delete_static_nat(x: Case) -> Step:
    net = x.implemented()
    ip, nic = x.assigned(net), x.vm(net)
    x.setup("add-static-nat", cp.static_nat(net, ip, nic.ip), net)
    return Step(cp.static_nat(net, ip, nic.ip), net,
                equal(None, lambda st: st["public_ips"][0]["static_nat"]))


def _forward(net: Net, ip: PublicIp, nic: Nic) -> Json:
    return cp.port_forward(net, ip, "tcp", "8000-8010", nic.ip, "9000-9010")


@case
def add_port_forward(x: Case) -> Step:
    net = x.implemented()
    ip, nic = x.assigned(net), x.vm(net)
    return Step(_forward(net, ip, nic), net, equal(
        [{"public_ip": ip.address, "protocol": "tcp", "public_ports": "8000-8010",
          "network_id": net.id, "private_ip": nic.ip, "private_ports": "9000-9010"}],
        lambda st: st["public_ips"][0]["port_forwards"]))


@case
def delete_port_forward(x: Case) -> Step:
    net = x.implemented()
    ip, nic = x.assigned(net), x.vm(net)
    x.setup("add-port-forward", _forward(net, ip, nic), net)
    return Step(_forward(net, ip, nic), net,
                equal([], lambda st: st["public_ips"][0]["port_forwards"]))


@case
def apply_fw_rules(x: Case) -> Step:
    net = x.implemented()
    ip = x.assigned(net)
    rules = [cp.fw_rule(31, "ingress", "tcp", ports=(22, 22), public_ip=ip.address,
                        source=["198.51.100.0/24", "192.0.2.7/32"]),
             cp.fw_rule(32, "ingress", "icmp", icmp=(-1, -1), public_ip=ip.address,
                        source=["0.0.0.0/0"]),
             cp.fw_rule(33, "egress", "udp", ports=(53, 53), source=[net.cidr],
                        dest=["192.0.2.53/32"])]
    return Step(cp.fw_rules(net, rules, default_egress_allow=False), net, equal(
        (False, [(31, ip.address, ["198.51.100.0/24", "192.0.2.7/32"], []),
                 (32, ip.address, ["0.0.0.0/0"], []), (33, None, [net.cidr], ["192.0.2.53/32"])]),
        lambda st: (st["firewall"]["default_egress_allow"], [
            (r["id"], r["publicIp"], r["sourceCidrs"], r["destCidrs"])
            for r in st["firewall"]["rules"]])))


@case
def apply_network_acl(x: Case) -> Step:
    tier = x.tier(x.vpc())
    items = [cp.acl_item(20, "deny", "egress", "all", source=["10.0.0.0/8"]),
             cp.acl_item(10, "allow", "ingress", "tcp", ports=(443, 443), source=["0.0.0.0/0"]),
             cp.acl_item(30, "allow", "ingress", "icmp", icmp=(8, 0), source=["192.0.2.0/24"])]
    return Step(cp.acl(tier, items), tier, equal(
        [(10, "allow", "ingress"), (20, "deny", "egress"), (30, "allow", "ingress")],
        lambda st: [(i["number"], i["action"], i["trafficType"]) for i in st["acl"]["rules"]]))


@case
def apply_lb_rules(x: Case) -> Step:
    net = x.implemented()
    ip, web0, web1 = x.assigned(net), x.vm(net, 0), x.vm(net, 1)
    rules = [cp.lb_rule(41, "web", ip, 80, 8080, [(web0.ip, 8080, False), (web1.ip, 8080, False),
                                                  (f"{net.cidr[:-4]}9", 8080, True)]),
             cp.lb_rule(42, "old", ip, 81, 81, [(web0.ip, 81, False)], revoke=True)]
    return Step(cp.lb(net, rules), net, equal(
        [{"id": 41, "name": "web", "publicIp": ip.address, "publicPort": 80,
          "privatePort": 8080, "protocol": "tcp", "algorithm": "roundrobin",
          "backends": [{"ip": web0.ip, "port": 8080}, {"ip": web1.ip, "port": 8080}]}],
        lambda st: st["load-balancers"]["rules"]))


@case
def prepare_nic(x: Case) -> Step:
    net = x.implemented()
    nic = x.nic(net)
    return Step(cp.prepare_nic(net, nic, "web-0"), net, equal(
        (nic.mac, nic.ip, "web-0", nic.nic_id, nic.uuid, True), lambda st: tuple(
            st["nics"][0][k] for k in ("mac", "ip", "hostname", "nic_id", "nic_uuid",
                                       "default_nic"))))


@case
def release_nic(x: Case) -> Step:
    net = x.implemented()
    return Step(cp.nic_only(net, x.vm(net)), net, equal([], lambda st: st["nics"]))


def _entry(command: str) -> Callable[[Case], Step]:
    """add-/remove-dhcp-entry and add-/remove-dns-entry: the NIC's entry and the service."""
    service, adding = command.split("-")[1], command.startswith("add")

    def build(x: Case) -> Step:
        net = x.implemented()
        nic = x.vm(net)
        if not adding:
            x.setup(f"add-{service}-entry", cp.dhcp_entry(net, nic, "web-0", "cs.lab"), net)
        payload = {"add-dhcp-entry": cp.dhcp_entry(net, nic, "web-0", "cs.lab"),
                   "add-dns-entry": cp.dns_entry(net, nic, "web-0", "cs.lab"),
                   "remove-dhcp-entry": cp.nic_only(net, nic),
                   "remove-dns-entry": cp.remove_dns_entry(net, nic, "cs.lab")}[command]
        return Step(payload, net, equal((adding, True, "cs.lab"), lambda st: (
            st["nics"][0][f"{service}_entry"], st["dhcp"][f"{service}_enabled"],
            st["dhcp"]["domain"])))

    return build


def _subnet(command: str) -> Callable[[Case], Step]:
    """config-/remove-dhcp-subnet and config-/remove-dns-subnet: the network's service."""
    service, adding = command.split("-")[1], command.startswith("config")

    def build(x: Case) -> Step:
        net = x.implemented()
        nic = x.vm(net)
        if not adding:
            x.setup(f"config-{service}-subnet", cp.config_subnet(net, nic, "cs.lab"), net)
        payload = (cp.config_subnet(net, nic, "cs.lab") if adding else
                   cp.remove_dhcp_subnet(net) if service == "dhcp" else
                   cp.remove_dns_subnet(net, "cs.lab"))
        return Step(payload, net, equal((adding, list(cp.DNS_SERVERS), "cs.lab"), lambda st: (
            st["dhcp"][f"{service}_enabled"], st["dhcp"]["dns"], st["dhcp"]["domain"])))

    return build


@case
def save_vm_data(x: Case) -> Step:
    net = x.implemented()
    nic = x.vm(net)
    data = cp.vm_data(nic, "web-0", 17, userdata=USERDATA, public_key=SSHKEY, password="Pw=1<2>")
    return Step(cp.save_vm_data(net, nic, data), net, equal(
        (True, {f"{i['dir']}/{i['file']}": i["content"] for i in data if i["dir"] != "password"}),
        lambda st: (st["nics"][0]["has_password"], files(st["nics"][0]))))


def _save(key: str, shown: str, value: str) -> Callable[[Case], Step]:
    """save-password, -userdata, -sshkey, -hypervisor-hostname: one file of the NIC."""

    def build(x: Case) -> Step:
        net = x.implemented()
        nic = x.vm(net)
        if key == "password":  # stored, never shown
            return Step(cp.save_item(net, nic, key, value), net,
                        equal(True, lambda st: st["nics"][0]["has_password"]))
        return Step(cp.save_item(net, nic, key, value), net,
                    equal(value, lambda st: files(st["nics"][0]).get(shown)))

    return build


@case
def restore_network(x: Case) -> Step:
    net = x.implemented()
    web0, web1 = x.vm(net, 0), x.nic(net, 1)
    vms = [cp.restore_vm(web0, "web-0", cp.vm_data(web0, "web-0", 20, userdata=USERDATA)),
           cp.restore_vm(web1, "web-1", cp.vm_data(web1, "web-1", 21))]
    return Step(cp.restore_network(net, vms, "cs.lab"), net, equal(
        ([(web0.mac, True, True), (web1.mac, True, True)], USERDATA, True), lambda st: (
            [(n["mac"], n["dhcp_entry"], n["dns_entry"]) for n in st["nics"]],
            files(st["nics"][0])["userdata/user_data"], st["dhcp"]["dhcp_enabled"])))


@case
def custom_action(x: Case) -> Step:
    net = x.implemented()
    return Step(cp.custom_action(cp.N(net), "show", {"verbose": "true"}), net, lambda out, _: _is(
        (json.loads(out)["status"], json.loads(out)["message"]["id"]), ("success", net.id)))


def _is(actual: object, expected: object) -> None:
    assert actual == expected


for _command in ("add-dhcp-entry", "remove-dhcp-entry", "add-dns-entry", "remove-dns-entry"):
    CASES[_command] = _entry(_command)
for _command in ("config-dhcp-subnet", "remove-dhcp-subnet", "config-dns-subnet",
                 "remove-dns-subnet"):
    CASES[_command] = _subnet(_command)
CASES["save-password"] = _save("password", "", "N3w=p4ss")
CASES["save-userdata"] = _save("userdata", "userdata/user_data", USERDATA)
CASES["save-sshkey"] = _save("sshkey", "metadata/public-keys", SSHKEY)
CASES["save-hypervisor-hostname"] = _save("hypervisor_hostname", "metadata/hypervisor-host-name",
                                          "kvm-7")


def test_every_command_has_a_case() -> None:
    assert set(CASES) == {*COMMANDS, "custom-action"}
    assert len(COMMANDS) == 32


def assert_output_shape(command: str, output: str) -> None:
    """What CloudStack reads back (protocol.md §4)."""
    if command == "ensure-network-device":
        assert "\n" not in output and isinstance(json.loads(output), dict), output
    elif command in ("implement-network", "custom-action"):
        assert "\n" not in output and json.loads(output)["status"] == "success", output
    else:
        assert output == "" or json.loads(output)["status"] == "success", output


@pytest.mark.parametrize("command", list(CASES))
def test_command_through_the_entry_point_and_its_replay(
    service: Service, cs: CloudStack, command: str
) -> None:
    step = CASES[command](Case(cs, list(CASES).index(command)))
    first_run = cs.run(command, step.payload, step.on)
    code, output = first_run.code, first_run.output
    assert code == 0, output
    assert_output_shape(command, output)
    first, part = cp.state_about(service, step.on)
    step.check(output, part)
    rendered = cp.rendered_configs(service)

    replay = cs.run(command, step.payload, step.on)
    assert (replay.code, replay.output) == (0, output)
    assert cp.state_about(service, step.on)[0] == first
    # Nor a device's config: the same text under the same generation, nothing to apply.
    assert cp.rendered_configs(service) == rendered


def test_implement_network_answers_the_same_vni_every_time(service: Service, cs: CloudStack
                                                          ) -> None:
    net = Net("90", "10.90.0.0/24", "10.90.0.1", state="implementing")
    cs.ensure(net)
    first = cs.ok("implement-network", cp.implement_network(net), net)
    uri = json.loads(first)["network.broadcast_uri"]
    up = replace(net, vlan=uri.removeprefix("vxlan://"), state="implemented")
    assert cs.ok("implement-network", cp.implement_network(up), up) == first
    details = cs.ensure(up)
    assert cs.ensure(up) == details and json.loads(details)["broadcast_uri"] == uri
    cs.ok("shutdown-network", cp.N(replace(up, state="shutdown")), up)
    other = Net("91", "10.91.0.0/24", "10.91.0.1")  # implemented while 90 is down
    assert json.loads(cs.ok("implement-network", cp.implement_network(other), other)
                      )["network.broadcast_uri"] != uri
    # CloudStack #14077: after garbage collection the network comes back without its URI.
    assert cs.ok("implement-network", cp.implement_network(net), net) == first
    assert service.ok("GET", "/v1/networks/90")["broadcast_uri"] == uri


# --- a ROUTED network's firewall ------------------------------------------------------

# --- failures: one line, never a traceback ---------------------------------------------

UNKNOWN = Net("92", "10.92.0.0/24", "10.92.0.1")


def one_line(code: int, output: str, *expected: str) -> None:
    assert code not in (0, None), output
    assert output and "\n" not in output and "Traceback" not in output, output
    assert all(text in output for text in expected), output


@pytest.mark.parametrize(("command", "payload", "expected"), [
    ("frobnicate-network", cp.N(UNKNOWN), "unknown command"),
    ("custom-action", cp.custom_action(cp.N(UNKNOWN), "reboot-device", {}), "unknown custom"),
    ("assign-ip", cp.public_ip(UNKNOWN, PublicIp("198.51.100.7"), False), "HTTP 4"),
])
def test_refused_command_fails_in_one_line(service: Service, command: str, payload: Json,
                                           expected: str) -> None:
    event = cp.event_of(command, Registration.of(service), {}, payload)
    one_line(*cp.run_entry_point(command, event), expected)


def test_unusable_event_fails_in_one_line() -> None:
    live = Registration(f"http://127.0.0.1:{free_port()}", "t0ken-0123456789abcdef")
    without_url = {k: v for k, v in live.details().items() if k != "vxgate.url"}
    one_line(*cp.run_entry_point("implement-network", "{not json"), "not JSON")
    one_line(*cp.run_entry_point("implement-network", cp.gson(
        {"physical-network-extension-details": without_url, "payload": cp.N(UNKNOWN)})),
        "vxgate.url")
    one_line(*cp.run_entry_point("implement-network", cp.envelope(live, {}, cp.N(UNKNOWN))),
             "cannot reach")  # nothing listens on that port


def test_a_service_that_never_answers_times_out_with_124() -> None:
    with cp.fake_service(None) as (url, requests):
        event = cp.envelope(Registration(url, "t0ken-0123456789abcdef"), {}, cp.N(UNKNOWN))
        started = time.monotonic()
        code, output = cp.run_entry_point("implement-network", event, timeout="1")
        elapsed = time.monotonic() - started
    assert code == 124 and elapsed < 2.5, (code, elapsed, output)
    one_line(code, output, "deadline")
    assert len(requests) == 1


def test_a_service_that_dies_before_answering_fails_in_one_line() -> None:
    """The service killed with the request in its hands: a connection closed without an
    answer is said as such, not as a malformed answer."""
    with cp.fake_service(b"") as (url, requests):
        event = cp.envelope(Registration(url, "t0ken-0123456789abcdef"), {}, cp.N(UNKNOWN))
        one_line(*cp.run_entry_point("implement-network", event),
                 "closed the connection without an answer", "safe to replay")
    assert len(requests) == 1


# --- secrets ---------------------------------------------------------------------------


def test_secrets_are_never_printed_forwarded_or_logged(service: Service) -> None:
    secret = replace(Registration.of(service), password="pw-4711=<&>'", sshkey="sk-0815\nEND")
    secrets = (secret.password, secret.sshkey, secret.token, cp.gson(secret.password)[1:-1])
    offset = service.log_path.stat().st_size
    net = Net("93", "10.93.0.0/24", "10.93.0.1")
    outputs = [cp.run_entry_point(command, cp.envelope(secret, {}, payload))[1]
               for command, payload in (
                   ("ensure-network-device", cp.ensure_network(net)),
                   ("implement-network", cp.implement_network(net)),
                   ("assign-ip", cp.public_ip(net, PublicIp("192.0.2.200"), False)),  # 400
                   ("frobnicate-network", cp.N(net)))]  # 404
    log = service.log_path.read_bytes()[offset:].decode(errors="replace")
    assert not [s for s in secrets for text in (*outputs, log) if s in text]

    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"ou\r\n"\
             b"b\r\ntput\":\"ok\"}\r\n0\r\n\r\n"
    with cp.fake_service(answer) as (url, requests):
        forwarded = replace(secret, url=url)
        assert cp.run_entry_point("ensure-network-device", cp.envelope(
            forwarded, {}, cp.ensure_network(net))) == (0, "ok")
    head, _, body = requests[0].decode().partition("\r\n\r\n")
    assert f"Authorization: Bearer {secret.token}" in head.splitlines()
    assert not [s for s in secrets if s in body]
    sent = json.loads(body)["physical-network-extension-details"]
    assert sent == {"vxgate.url": url, "hosts": "192.0.2.10", "username": "cloud",
                    "physicalnetworkname": cp.PHYSNET_NAME}

