"""The service down: the data plane keeps forwarding, CloudStack's new events fail in one
clear line, and after the service is back the agents reconnect by themselves and the
replayed operation converges.

A network with web1 on hv1 and web2 on hv2; two 20 ms ping streams run throughout, web1
to the internet host (through the SoftGate's source NAT) and web1 to web2 (VXLAN across
the hypervisors). The service is stopped by its pid (SIGTERM to its process group) and
started again as it was (the same port, Unix socket, token and database).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cs
import pytest

from bench.service import started_again, stop_by_pid
from simulator.cloud import Cloud
from simulator.evpn_fabric import INTERNET_HOST
from simulator.fabric import wait_until
from simulator.traffic import PingStream, connect, ping_stream, server_in
from tests.scenarios.conftest import scenario_cloud

# What "no gap beyond normal" means for a 20 ms stream: a reply late by a scheduling
# hiccup of this loaded machine, not an outage (an agent that tore the data plane down
# would stop the stream for seconds).
NORMAL_GAP_S = 1.0
DOWN_FOR_S = 3.0  # the streams run this long with the service down, at least
AGENT_NODES = ("sg1", "hv1", "hv2")


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud()


@pytest.fixture(scope="module")
def network(cloud: Cloud) -> dict[str, Any]:
    net = cloud.isolated_network("down1", "10.110.0.1")
    vms = [cloud.deploy(name, net["id"], host,
                        userdata=base64.b64encode(b"#cloud-config\n").decode())
           for name, host in (("web1", "hv1"), ("web2", "hv2"))]
    for vm in vms:
        cloud.lease(vm["id"])
    assert not cloud.failed_spawns()
    return {"network": net, "vms": vms}


def agents_socket(cloud: Cloud) -> Path:
    """The Unix socket the agents reach the service by (they run in namespaces)."""
    url = (cloud.fabric.node_dir("sg1") / "service-url").read_text().strip()
    assert url.startswith("unix://"), url
    return Path(url.removeprefix("unix://"))


def flowing(stream: PingStream) -> bool:
    return len(stream.replies()) >= 10


def test_service_down_keeps_traffic_fails_new_events_in_one_line_and_recovers(
        cloud: Cloud, network: dict[str, Any]) -> None:
    api, fabric = cloud.api, cloud.fabric
    web1, web2 = (cloud.node(vm["id"]) for vm in network["vms"])
    web2_ip = network["vms"][1]["nic"][0]["ipaddress"]
    forwarded = api.associateIpAddress(networkid=network["network"]["id"])["ipaddress"]
    forward = {"ipaddressid": forwarded["id"], "privateport": 22, "publicport": 2222,
               "protocol": "tcp", "virtualmachineid": network["vms"][1]["id"]}
    logs = {node: fabric.node_dir(node) / "agent.log" for node in AGENT_NODES}
    with ping_stream(fabric, web1, INTERNET_HOST) as outward, \
            ping_stream(fabric, web1, web2_ip) as across, server_in(fabric, web2, 22):
        wait_until("both ping streams to flow",
                   lambda: flowing(outward) and flowing(across), timeout=30)
        before = {node: log.stat().st_size for node, log in logs.items()}
        spawned = len(cloud.sim.spawns())

        stop_by_pid(cloud.service)
        down = time.time()
        with pytest.raises(cs.CloudStackApiException) as refused:
            api.createPortForwardingRule(**forward)
        new_spawns = cloud.sim.spawns()[spawned:]
        failed = [spawn for spawn in new_spawns if spawn.code != 0]
        assert [spawn.command for spawn in failed][-1:] == ["add-port-forward"], new_spawns
        line = failed[-1].output
        assert len(line.splitlines()) == 1 and "Traceback" not in line, line
        assert line.startswith("vxgate: add-port-forward: cannot reach the vxgate service"), \
            line
        assert line in str(refused.value), refused.value  # what the API caller is told
        assert api.listPortForwardingRules(ipaddressid=forwarded["id"], fetch_list=True) == []
        wait_until(f"{DOWN_FOR_S:.0f} s of traffic with the service down", lambda: (
            outward.replying_since(down, DOWN_FOR_S) and across.replying_since(down, DOWN_FOR_S)),
            timeout=30)
        wait_until("every agent to notice the service is down", lambda: all(
            "service unreachable" in logs[node].read_text()[before[node]:]
            for node in AGENT_NODES), timeout=30)

        with started_again(cloud.service, agents_socket(cloud)) as service:
            up = time.time()
            # CloudStack re-issuing the operation (the user, or the admin's retry).
            rule = api.createPortForwardingRule(**forward)["portforwardingrule"]
            wait_until("the replayed port forward to carry traffic (the SoftGate's agent "
                       "reconnected by itself)",
                       lambda: connect(fabric, "up1", forwarded["ipaddress"], 2222) != "",
                       timeout=60)
            wait_until("every agent to reconnect by itself", lambda: all(
                "service reachable again" in logs[node].read_text()[before[node]:]
                for node in AGENT_NODES), timeout=90)
            # sg1 applied the port forward's config and reported it to the new service.
            generation = service.ok("GET", "/v1/devices/sg1/config")["generation"]
            wait_until("sg1 to report the generation it applied", lambda: generation in {
                o["generation"] for o in service.ok("GET", "/v1/devices/sg1/status")["objects"]
                if o["kind"] == "artifact"}, timeout=30)
            assert [r["id"] for r in api.listPortForwardingRules(
                ipaddressid=forwarded["id"], fetch_list=True)] == [rule["id"]]
            wait_until("traffic after the restart", lambda: (
                outward.replying_since(up, 1.0) and across.replying_since(up, 1.0)),
                timeout=30)
            assert outward.longest_gap() < NORMAL_GAP_S, outward.longest_gap()
            assert across.longest_gap() < NORMAL_GAP_S, across.longest_gap()
            assert outward.lost() == [] and across.lost() == [], (outward.lost(),
                                                                 across.lost())
            api.deletePortForwardingRule(id=rule["id"])
            assert [s for s in cloud.sim.spawns()[spawned + len(new_spawns):]
                    if s.code != 0] == []
