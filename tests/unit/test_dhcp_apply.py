"""dhcp_apply against the fakes: which change costs a SIGHUP, a restart, a start."""

from __future__ import annotations

from typing import Any

from agent.dhcp_apply import Action, DhcpApplier, plan, restore_network
from agent.dhcp_state import DhcpState
from agent.dnsmasq import FakeDnsmasq
from agent.metadata_process import GLOBAL, FakeMetadataServer
from tests.unit.dhcp_samples import ipv4_network, ipv6_network, nic, non_default_network, state_json

Fakes = tuple[DhcpApplier, FakeDnsmasq, FakeMetadataServer]


def fakes() -> Fakes:
    dnsmasq, metadata = FakeDnsmasq(), FakeMetadataServer()
    return DhcpApplier(dnsmasq, metadata), dnsmasq, metadata


def state(*networks: dict[str, Any]) -> DhcpState:
    return DhcpState.from_json(state_json(*networks))


def converged(applier: DhcpApplier, dnsmasq: FakeDnsmasq, new: DhcpState) -> None:
    result = applier.apply(None, new)
    assert result.ok, result.statuses
    dnsmasq.actions.clear()


def test_first_apply_starts_everything_and_reports_per_object() -> None:
    applier, dnsmasq, metadata = fakes()
    result = applier.apply(None, state())
    assert result.actions == {"201": "start", "202": "start", "203": "start"}
    assert [a for a in dnsmasq.actions if a[0] == "start"] == [
        ("start", "201"), ("start", "202"), ("start", "203")]
    assert metadata.actions == ["start"]
    assert metadata.config is not None and metadata.config.network_ids == ("201", "202", "203")
    assert {(s.kind, s.id) for s in result.statuses} == {
        (kind, net) for kind in ("dnsmasq", "metadata") for net in ("201", "202", "203")}
    assert result.ok


def test_plan_is_pure_and_classifies_changes() -> None:
    old = state(ipv4_network(), non_default_network())
    grown = ipv4_network()
    grown["nics"].append(nic(7))
    renamed = non_default_network()
    renamed["domain"] = "other.internal"
    result = plan(old, state(grown, renamed, ipv6_network()), lambda n: FakeDnsmasq()
                  .directory(n))
    assert result.actions == {"201": Action.RELOAD, "202": Action.RESTART, "203": Action.START}
    assert plan(old, state(ipv4_network()), FakeDnsmasq().directory).remove == ("202",)
    assert plan(old, old, FakeDnsmasq().directory).actions == {
        "201": Action.NONE, "202": Action.NONE}


def test_adding_a_vm_is_a_sighup_not_a_restart() -> None:
    applier, dnsmasq, metadata = fakes()
    old = state(ipv4_network())
    converged(applier, dnsmasq, old)
    pid = dnsmasq.pids["201"]
    grown = ipv4_network()
    grown["nics"].append(nic(7))
    result = applier.apply(old, state(grown))
    assert result.actions == {"201": "reload"}
    assert dnsmasq.actions == [("write", "201"), ("reload", "201")]
    assert dnsmasq.pids["201"] == pid
    assert metadata.actions == ["start", "reload"]


def test_network_wide_change_restarts_only_that_network() -> None:
    applier, dnsmasq, _ = fakes()
    old = state(ipv4_network(), non_default_network())
    converged(applier, dnsmasq, old)
    changed = ipv4_network()
    changed["dns_servers"] = ["192.0.2.1"]
    result = applier.apply(old, state(changed, non_default_network()))
    assert result.actions == {"201": "restart", "202": "none"}
    assert dnsmasq.actions == [("write", "201"), ("stop", "201"), ("start", "201")]


def test_nothing_changed_means_nothing_done() -> None:
    applier, dnsmasq, metadata = fakes()
    desired = state()
    converged(applier, dnsmasq, desired)
    assert applier.apply(desired, desired).actions == {"201": "none", "202": "none",
                                                       "203": "none"}
    assert dnsmasq.actions == [] and metadata.actions == ["start"]


def test_agent_restart_does_not_restart_running_instances() -> None:
    applier, dnsmasq, _ = fakes()
    desired = state()
    converged(applier, dnsmasq, desired)
    result = applier.apply(None, desired)  # the agent forgot `old`, the machine did not
    assert set(result.actions.values()) == {"reload"}
    assert not [a for a in dnsmasq.actions if a[0] in ("start", "stop")]


def test_crashed_instance_is_started_again() -> None:
    applier, dnsmasq, _ = fakes()
    desired = state()
    converged(applier, dnsmasq, desired)
    dnsmasq.crash("202")
    assert applier.apply(desired, desired).actions["202"] == "start"
    assert "202" in dnsmasq.pids


def test_removed_network_and_strays_are_removed() -> None:
    applier, dnsmasq, _ = fakes()
    old = state()
    converged(applier, dnsmasq, old)
    dnsmasq.files["999"] = {}  # a directory no network owns, left by an earlier run
    result = applier.apply(old, state(ipv4_network()))
    assert result.actions == {"201": "none", "202": "remove", "203": "remove", "999": "remove"}
    assert set(dnsmasq.pids) == {"201"} and set(dnsmasq.files) == {"201"}


def test_network_without_dhcp_and_dns_has_no_dnsmasq_but_keeps_metadata() -> None:
    applier, dnsmasq, metadata = fakes()
    data = ipv4_network()
    data["dhcp"] = data["dns"] = False
    result = applier.apply(None, state(data))
    assert result.actions == {} and dnsmasq.pids == {}
    assert [(s.kind, s.id) for s in result.statuses] == [("metadata", "201")]
    assert metadata.config is not None and metadata.config.network_ids == ("201",)


def test_no_userdata_anywhere_stops_the_metadata_server() -> None:
    applier, dnsmasq, metadata = fakes()
    converged(applier, dnsmasq, state())
    data = ipv4_network()
    data["userdata"] = False
    applier.apply(None, state(data))
    assert metadata.pid is None and metadata.actions[-1] == "stop"


def test_failures_are_reported_per_object() -> None:
    applier, dnsmasq, metadata = fakes()
    dnsmasq.fail["202"] = "dnsmasq exited with 2: unknown interface vxb-5002"
    metadata.errors = {"203": "cannot listen on 10.10.3.1:80 in vxr-1003: No such file"}
    result = applier.apply(None, state())
    bad = {(s.kind, s.id): s.reason for s in result.statuses if not s.ok}
    assert bad == {("dnsmasq", "202"): "dnsmasq exited with 2: unknown interface vxb-5002",
                   ("metadata", "203"): "cannot listen on 10.10.3.1:80 in vxr-1003: No such file"}
    metadata.errors = {GLOBAL: "the metadata server exited with 1"}
    result = applier.apply(None, state())
    assert {s.reason for s in result.statuses if s.kind == "metadata"} == {
        "the metadata server exited with 1"}


def test_restore_network_is_one_batch() -> None:
    applier, dnsmasq, metadata = fakes()
    current = state(ipv4_network(), non_default_network())
    converged(applier, dnsmasq, current)
    restored = ipv4_network()
    restored["nics"] = [nic(i) for i in range(1, 30)]
    network = DhcpState.from_json(state_json(restored)).networks[0]
    new, result = restore_network(applier, current, network)
    assert new.network("201") == network
    assert dnsmasq.actions == [("write", "201"), ("reload", "201")]
    assert result.actions == {"201": "reload", "202": "none"}
    assert metadata.actions == ["start", "reload"]


def test_apply_json_reports_bad_objects_and_applies_the_rest() -> None:
    applier, dnsmasq, _ = fakes()
    data = state_json()
    data["networks"][1]["nics"][0]["hostname"] = "evil\nserver=6.6.6.6"
    data["networks"][2]["bridge"] = "x" * 20
    new, result = applier.apply_json(None, data)
    assert [net.id for net in new.networks] == ["201", "202"]
    bad = [(s.kind, s.id) for s in result.statuses if not s.ok]
    assert bad == [("nic", "202/02:00:0a:0a:02:01"), ("network", "203")]
    assert "6.6.6.6" not in dnsmasq.files["202"]["dhcp-hosts"]


def test_removed_vm_holding_a_lease_costs_a_restart() -> None:
    applier, dnsmasq, _ = fakes()
    old = state(ipv4_network())
    converged(applier, dnsmasq, old)
    smaller = ipv4_network()
    del smaller["nics"][2]
    dnsmasq.stale.add("201")  # its lease is still in the lease file
    assert applier.apply(old, state(smaller)).actions == {"201": "restart"}
    assert dnsmasq.stale == set()  # start pruned it
    assert applier.apply(state(smaller), state(smaller)).actions == {"201": "none"}
