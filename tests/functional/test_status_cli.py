"""`vxgate status` against a real service: devices and networks declared, configs
rendered as agents fetch them, statuses reported (ok, error with a reason, none yet).
Also GET /v1/placement, the read-only call the command is built on."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.service import (
    Service,
    console_script,
    free_port,
    reset_postgres_schema,
    running_service,
    with_this_checkout,
)
from tests.conftest import Api, usable_postgres_url
from tests.functional.test_observability import samples, value
from tests.golden import frr_cases as fc

DEAD = "health check: no answer since 2026-01-01T11:59:58+00:00"  # agent/lb_health.reason
REASON = ("RTNETLINK answers: File exists: adding vxv10000 to bridge vxb10000 in vxr5000000 "
          "failed because another process holds it; retrying with backoff")


def declare(request: Any) -> None:
    """A zone with an isolated network (net1), a VPC with one tier (tier1), a VLAN
    network (vnet: no hypervisor config), two hypervisors, a SoftGate and a spine."""
    fc._zone(request)
    request("PUT", f"/v1/physical-networks/{fc.VLAN}", {"zone_id": fc.ZONE, "name": "vlan",
                                                        "isolation_method": "vlan",
                                                        "l3vni_range": "6000000-6999999"})
    fc._network(request, "net1", "10.100.0.0/24")
    fc._vpc(request, "vpc1", "10.1.0.0/16")
    fc._network(request, "tier1", "10.1.1.0/24", vpc_id="vpc1")
    fc._network(request, "vnet", "10.200.0.0/24", physnet=fc.VLAN)
    for name, role, loopback in (("hv1", "hypervisor", "10.255.1.1"),
                                 ("hv2", "hypervisor", "10.255.1.2"),
                                 ("sg1", "softgate", "10.255.2.1")):
        fc._device(request, name, role, loopback)
    fc._device(request, "spine1", "spine", "10.255.0.1", ("swp1",), asn=65000)


# --- GET /v1/placement -----------------------------------------------------------------


def test_placement_names_the_devices_that_carry_each_network(api: Api) -> None:
    declare(lambda method, path, body=None: api.ok(method, path, body))
    api.ok("GET", "/v1/devices/sg1/config")  # rendered, as the agent's poll does
    answer = api.ok("GET", "/v1/placement")
    carriers = {n["id"]: [c["device"] for c in n["devices"]] for n in answer["networks"]}
    assert carriers == {"net1": ["hv1", "hv2", "sg1"], "tier1": ["hv1", "hv2", "sg1"],
                        "vnet": ["sg1"]}
    assert [d["name"] for d in answer["devices"]] == ["hv1", "hv2", "sg1", "spine1"]
    sg1 = next(d for d in answer["devices"] if d["name"] == "sg1")
    assert [a["name"] for a in sg1["artifacts"]] == ["frr.conf", "softgate.json"]
    tier1 = next(n for n in answer["networks"] if n["id"] == "tier1")["devices"][2]
    assert tier1["artifacts"] == ["softgate.json", "frr.conf"]
    assert {"kind": "domain", "id": "vxr5000001"} in tier1["objects"]
    assert {"kind": "conntrack_sync", "id": "vxr5000001"} in tier1["objects"]
    # An id the agent would not take is reported under its stand-in (agent_id).
    fc._network(lambda method, path, body: api.ok(method, path, body), "odd_id", "10.9.0.0/24")
    odd = api.ok("GET", "/v1/placement?network_id=odd_id")["networks"][0]["devices"][2]
    assert odd["objects"][3]["kind"] == "segment" and odd["objects"][3]["id"].startswith("x")
    net1 = api.ok("GET", "/v1/placement?network_id=net1")
    assert [d["name"] for d in net1["devices"]] == ["hv1", "hv2", "sg1"]
    assert {"kind": "segment", "id": "net1"} in net1["networks"][0]["devices"][2]["objects"]
    # A SoftGate reports the members of the network's LB rules by rule id (agent/lb_health).
    fc._public_ip(lambda method, path, body: api.ok(method, path, body), "203.0.113.10",
                  network_id="net1")
    api.ok("PUT", "/v1/networks/net1/load-balancers", {"rules": [lb_rule(77), lb_rule(7)]})
    sg1 = api.ok("GET", "/v1/placement?network_id=net1")["networks"][0]["devices"][2]
    assert sg1["object_prefixes"] == [{"kind": "nic", "prefix": "net1/"},
                                      {"kind": "lb_backend", "prefix": "7/"},
                                      {"kind": "lb_backend", "prefix": "77/"}]
    tier1 = api.ok("GET", "/v1/placement?network_id=tier1")["networks"][0]["devices"][2]
    assert [p["kind"] for p in tier1["object_prefixes"]] == ["nic"]
    assert api.fails("GET", "/v1/placement?network_id=nosuch", None, 404) == \
        "unknown network nosuch"
    assert api.fails("GET", "/v1/placement?network_id=a%20b", None, 400)


def lb_rule(rule_id: int) -> dict[str, Any]:
    """An apply-lb-rules rule on net1's 203.0.113.10, one member: 10.100.0.10:8080."""
    return {"id": rule_id, "name": f"web{rule_id}", "publicIp": "203.0.113.10",
            "publicPort": rule_id, "privatePort": 8080, "protocol": "tcp",
            "algorithm": "roundrobin", "revoke": False,
            "backends": [{"ip": "10.100.0.10", "port": 8080, "revoked": False}]}


# --- the command -------------------------------------------------------------------------


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    url = usable_postgres_url(reset_postgres_schema) if request.param == "postgres" else ""
    with running_service(url, workers=2) as running:
        declare(lambda method, path, body=None: running.ok(method, path, body))
        yield running


def applied(service: Service, device: str, objects: list[dict[str, str]] | None = None) -> int:
    """The device's agent: fetch the configs, report every artifact applied, and
    `objects`; the generation."""
    config = service.ok("GET", f"/v1/devices/{device}/config")
    reports = [{"kind": "artifact", "id": name, "state": "ok"} for name in config["artifacts"]]
    service.ok("PUT", f"/v1/devices/{device}/status",
               {"generation": config["generation"], "objects": reports + (objects or [])})
    return int(config["generation"])


def vxgate(service: Service, *argv: str, token: str | None = None,
           url: str = "") -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VXGATE_")}
    env["VXGATE_ADMIN_TOKEN"] = service.token if token is None else token
    env["VXGATE_SERVICE_URL"] = url or f"http://{service.host}:{service.port}"
    done = subprocess.run([console_script("vxgate"), "status", *argv], env=with_this_checkout(env),
                          capture_output=True, text=True, timeout=60, check=False)
    # Whatever happened: no traceback, and the admin token nowhere.
    assert "Traceback" not in done.stderr
    assert service.token not in done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def reported(service: Service) -> Service:
    """hv1 applied all; sg1 applied, with an error on net1's segment; hv2 and spine1
    fetched their configs but reported nothing (pending)."""
    applied(service, "hv1")
    applied(service, "sg1", [
        {"kind": "segment", "id": "net1", "state": "error", "reason": REASON},
        {"kind": "network", "id": "net1", "state": "ok"},
        {"kind": "segment", "id": "vnet", "state": "ok"}])
    for device in ("hv2", "spine1"):
        service.ok("GET", f"/v1/devices/{device}/config")
    return service


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_the_table_shows_errors_with_their_reason_and_exits_one(reported: Service) -> None:
    done = vxgate(reported)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "VPC", "MODE", "CIDR", "BROADCAST", "DEVICE",
                                "ROLE", "STATUS", "DETAIL"]
    net1 = lines[1:4]
    assert net1[0].split()[:8] == ["net1", "-", "natted", "10.100.0.0/24", "vxlan://10000",
                                   "hv1", "hypervisor", "ok"]
    assert net1[1].split()[:3] == ["hv2", "hypervisor", "pending"]
    assert "frr.conf: generation" in net1[1] and "not applied (device at none)" in net1[1]
    assert net1[2].split()[:3] == ["sg1", "softgate", "ERROR"]
    assert "segment net1: RTNETLINK answers: File exists" in net1[2]
    assert net1[2].endswith("…") and REASON not in done.stdout  # one line, cut
    tier1 = next(line for line in lines if line.startswith("tier1"))
    assert tier1.split()[:6] == ["tier1", "vpc1", "natted", "10.1.1.0/24", "vxlan://10001",
                                 "hv1"]
    vnet = next(line.split() for line in lines if line.startswith("vnet"))
    assert vnet[4:8] == ["vlan://3000", "sg1", "softgate", "ok"]
    summary = lines[lines.index("") + 1:]
    assert summary[0].split() == ["DEVICE", "ROLE", "GENERATION", "APPLIED", "LAST", "REPORT",
                                  "ERRORS", "PENDING"]
    devices = {r[0]: r for r in rows("\n".join(summary[1:5]))}
    assert devices["sg1"][-4:] == ["s", "ago", "1", "0"]  # one error, nothing pending
    assert devices["spine1"][-4:] == ["-", "never", "0", "1"]
    assert lines[-1].startswith("PROBLEMS: 3 networks on 4 devices;")


def test_errors_only_shows_the_problems(reported: Service) -> None:
    done = vxgate(reported, "--errors", "--network", "net1")
    assert done.returncode == 1
    table = rows(done.stdout)
    assert table[1][:8] == ["net1", "-", "natted", "10.100.0.0/24", "vxlan://10000", "hv2",
                            "hypervisor", "pending"]
    assert table[2][:3] == ["sg1", "softgate", "ERROR"]
    assert not any(r[:2] == ["hv1", "hypervisor"] for r in table)
    assert "tier1" not in done.stdout and "spine1" not in done.stdout


def test_json_is_the_whole_story(reported: Service) -> None:
    done = vxgate(reported, "--json", "--network", "net1")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["exit_status"] == 1 and data["pending_grace_s"] == 120
    (net1,) = data["networks"]
    assert (net1["id"], net1["broadcast_uri"]) == ("net1", "vxlan://10000")
    states = {d["device"]: d["state"] for d in net1["devices"]}
    assert states == {"hv1": "ok", "hv2": "pending", "sg1": "error"}
    sg1 = next(d for d in net1["devices"] if d["device"] == "sg1")
    assert sg1["problems"][0]["reason"] == REASON  # whole, in JSON
    assert [d["name"] for d in data["devices"]] == ["hv1", "hv2", "sg1"]


def test_pending_is_a_problem_only_after_the_grace(service: Service, reported: Service) -> None:
    # The error fixed; hv2 and spine1 a change behind, as right after an event.
    applied(service, "sg1", [{"kind": "segment", "id": "net1", "state": "ok"}])
    done = vxgate(service, "--errors")
    assert done.returncode == 0, done.stdout
    assert " pending " in done.stdout and done.stdout.splitlines()[-1].startswith("applying:")
    assert vxgate(service, "--pending-grace", "0").returncode == 1
    for device in ("hv2", "spine1"):
        applied(service, device)
    done = vxgate(service, "--errors")
    assert done.returncode == 0 and done.stdout.startswith("all applied: 3 networks on 4 "
                                                           "devices; 7/7 placements ok")


def test_unreachable_refused_and_unknown_are_one_line_and_exit_two(service: Service,
                                                                    tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    done = vxgate(service, url=nobody)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"vxgate status: cannot reach the service at {nobody}: " \
                          "[Errno 111] Connection refused\n"
    wrong = "wrong-token-" + "x" * 20
    done = vxgate(service, token=wrong)
    assert (done.returncode, done.stderr) == (
        2, "vxgate status: /v1/networks: the service answered 401: invalid token\n")
    assert wrong not in done.stdout + done.stderr
    done = vxgate(service, "--network", "nosuch")
    assert (done.returncode, done.stderr) == (
        2, "vxgate status: /v1/networks/nosuch: the service answered 404: unknown network "
           "nosuch\n")
    token_file = tmp_path / "token"
    token_file.write_text(service.token + "\n")
    done = vxgate(service, "--token-file", str(token_file), "--network", "vnet",
                  token="ignored-because-of-the-file")
    assert done.returncode in (0, 1) and "vlan://3000" in done.stdout


def test_a_dead_lb_member_is_on_its_networks_softgate_row(service: Service) -> None:
    """As sg1's agent does it: the LB change touches softgate.json only, the agent applies
    and reports that one (frr.conf keeps its older report) and its health checks report a
    member dead. The error is on net1's sg1 row, not under "Other errors"; and sg1 counts as
    applied up to its generation, in the table and in /metrics."""
    fc._public_ip(lambda method, path, body: service.ok(method, path, body), "203.0.113.10",
                  network_id="net1")
    before = applied(service, "sg1", [{"kind": "segment", "id": "net1", "state": "ok"}])
    service.ok("PUT", "/v1/networks/net1/load-balancers", {"rules": [lb_rule(77)]})
    config = service.ok("GET", f"/v1/devices/sg1/config?since={before}")
    assert list(config["artifacts"]) == ["softgate.json"]  # frr.conf: still `before`'s
    generation = config["generation"]
    assert generation > before
    service.ok("PUT", "/v1/devices/sg1/status", {"generation": generation, "objects": [
        {"kind": "artifact", "id": "softgate.json", "state": "ok"},
        {"kind": "lb_backend", "id": "77/10.100.0.10:8080", "state": "error",
         "reason": DEAD}]})

    done = vxgate(service, "--network", "net1")
    assert done.returncode == 1, done.stderr
    networks, devices = done.stdout.split("\n\n")[:2]
    (sg1,) = [r for r in rows(networks) if r[:2] == ["sg1", "softgate"]]
    assert sg1[2] == "ERROR"
    assert " ".join(sg1[3:]).startswith("lb_backend 77/10.100.0.10:8080: health check: "
                                        "no answer since")
    assert "Other errors" not in done.stdout
    (device,) = [r for r in rows(devices) if r[0] == "sg1"]
    assert device[2:4] == [str(generation), str(generation)]  # GENERATION, APPLIED

    data = json.loads(vxgate(service, "--json", "--network", "net1").stdout)
    (row,) = [d for d in data["networks"][0]["devices"] if d["device"] == "sg1"]
    assert row["state"] == "error"
    assert {"kind": "lb_backend", "id": "77/10.100.0.10:8080", "state": "error",
            "reason": DEAD} in [{k: p[k] for k in ("kind", "id", "state", "reason")}
                                for p in row["problems"]]
    scraped = samples(service)
    labels = {"device": "sg1", "role": "softgate"}
    assert value(scraped, "vxgate_device_config_generation", **labels) == generation
    assert value(scraped, "vxgate_device_applied_generation", **labels) == generation
