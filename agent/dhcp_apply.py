"""From old and new desired DHCP/DNS/VM-data state to dnsmasq and metadata-server actions.

`plan` is pure: it renders both states and compares, per network, what dnsmasq would
read. A changed dnsmasq.conf means RESTART (dnsmasq reads it only at start), changed
hosts files mean RELOAD (SIGHUP) - unless the instance holds a lease that no dhcp-hosts
line backs any more (a VM removed, or its MAC or address changed): leases are infinite and
SIGHUP keeps them, so that address would never go to the next VM; then RESTART, and the
start prunes the lease file first; a network that is new means START, one that is gone (or
no longer has DHCP or DNS) means REMOVE.

`DhcpApplier.apply` carries the plan out against what is really there, because events are
hints and the machine may differ from `old` (agent restart with old=None, a crashed
dnsmasq, a half-done earlier apply): a network whose dnsmasq is not running is started,
a file that differs on disk escalates to what that file needs, instance directories that
no network owns are removed. All starts go out as one parallel batch, all stops too.
The metadata server gets the whole new config in one write and one SIGHUP.

restore-network is `restore_network`: the network's whole state replaced in one apply, so
one write and one SIGHUP (or restart) of its dnsmasq and one metadata reload.

The result is one ObjectStatus per network and service (kind "dnsmasq" or "metadata"),
plus what parsing left out (kind "network" or "nic", from dhcp_state.parse_state).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.dhcp_state import DhcpState, Network, ObjectStatus, parse_state, with_network
from agent.dnsmasq import DnsmasqControl, Instance
from agent.dnsmasq_render import CONF, DnsmasqFiles, render
from agent.metadata_process import (
    GLOBAL,
    HTTP_PORT,
    PASSWORD_PORT,
    MetadataControl,
    render_config,
)


class Action(enum.IntEnum):
    """Ordered: when plan and reality disagree, the larger action wins."""

    NONE = 0
    RELOAD = 1
    RESTART = 2
    START = 3


@dataclass(frozen=True)
class DnsmasqPlan:
    actions: dict[str, Action]  # network id -> action, for every network that has dnsmasq
    remove: tuple[str, ...]


def plan(old: DhcpState | None, new: DhcpState, directory: Callable[[str], Path]
         ) -> DnsmasqPlan:
    before = _rendered(old, directory)
    after = _rendered(new, directory)
    actions = {net_id: _action(before.get(net_id), files) for net_id, files in after.items()}
    remove = tuple(sorted(net_id for net_id in before if net_id not in after))
    return DnsmasqPlan(actions, remove)


def _rendered(state: DhcpState | None, directory: Callable[[str], Path]
              ) -> dict[str, DnsmasqFiles]:
    if state is None:
        return {}
    return {net.id: render(net, directory(net.id))
            for net in state.networks if net.needs_dnsmasq}


def _action(before: DnsmasqFiles | None, after: DnsmasqFiles) -> Action:
    if before is None:
        return Action.START
    if before.conf != after.conf:
        return Action.RESTART
    if before != after:
        return Action.RELOAD
    return Action.NONE


@dataclass
class ApplyResult:
    statuses: list[ObjectStatus] = field(default_factory=list)
    actions: dict[str, str] = field(default_factory=dict)  # network id -> what was done

    @property
    def ok(self) -> bool:
        return all(status.ok for status in self.statuses)


class DhcpApplier:
    def __init__(self, dnsmasq: DnsmasqControl, metadata: MetadataControl, *,
                 http_port: int = HTTP_PORT, password_port: int = PASSWORD_PORT,
                 metadata_in_own_netns: bool = False) -> None:
        self.dnsmasq = dnsmasq
        self.metadata = metadata
        self.http_port = http_port
        self.password_port = password_port
        self.metadata_in_own_netns = metadata_in_own_netns

    def apply_json(self, old: DhcpState | None, data: object
                   ) -> tuple[DhcpState, ApplyResult]:
        """A full resync from the service's JSON: bad objects reported, the rest applied."""
        new, problems = parse_state(data)
        result = self.apply(old, new)
        result.statuses[:0] = problems
        return new, result

    def apply(self, old: DhcpState | None, new: DhcpState) -> ApplyResult:
        result = ApplyResult()
        the_plan = plan(old, new, self.dnsmasq.directory)
        wanted = {net.id: net for net in new.networks if net.needs_dnsmasq}
        strays = self.dnsmasq.known() - set(wanted)
        self.dnsmasq.remove(sorted(set(the_plan.remove) | strays))
        for net_id in sorted(set(the_plan.remove) | strays):
            result.actions[net_id] = "remove"
        actions = {net_id: self._observed(wanted[net_id], planned)
                   for net_id, planned in the_plan.actions.items()}
        errors = self._carry_out(wanted, actions)
        for net_id, action in sorted(actions.items()):
            result.actions[net_id] = action.name.lower()
            result.statuses.append(_status("dnsmasq", net_id, errors.get(net_id, "")))
        result.statuses += self._metadata(new)
        return result

    def _observed(self, network: Network, planned: Action) -> Action:
        """Write the files; escalate the planned action to what reality needs."""
        changed = self.dnsmasq.write(network.id, render(network, self.dnsmasq.directory(
            network.id)))
        if self.dnsmasq.running(network.id) is None:
            return Action.START
        if planned == Action.START:
            # Planned as new, but an instance is there (the agent restarted): no need to
            # restart it unless its config differs, a SIGHUP picks up the hosts files.
            planned = Action.RELOAD
        seen = Action.RESTART if CONF in changed else Action.RELOAD if changed else Action.NONE
        if seen == Action.RELOAD and self.dnsmasq.stale_leases(network.id):
            # A VM left (or changed MAC or address) holding an infinite lease: only a
            # restart, which prunes the lease file, frees its address for the next VM.
            seen = Action.RESTART
        return max(planned, seen)

    def _carry_out(self, networks: dict[str, Network], actions: dict[str, Action]
                   ) -> dict[str, str]:
        restart = [net_id for net_id, action in actions.items() if action == Action.RESTART]
        self.dnsmasq.stop(restart)
        start = [Instance(net_id, networks[net_id].netns) for net_id, action in
                 sorted(actions.items()) if action in (Action.START, Action.RESTART)]
        errors = self.dnsmasq.start(start)
        errors.update(self.dnsmasq.reload(
            net_id for net_id, action in sorted(actions.items()) if action == Action.RELOAD))
        return errors

    def _metadata(self, state: DhcpState) -> list[ObjectStatus]:
        config = render_config(state, self.http_port, self.password_port,
                               self.metadata_in_own_netns)
        if not config.network_ids:
            self.metadata.stop()
            return []
        errors = self.metadata.apply(config)
        shared = errors.get(GLOBAL, "")
        return [_status("metadata", net_id, shared or errors.get(net_id, ""))
                for net_id in config.network_ids]

    def stop_all(self) -> None:
        """Everything this applier runs: every dnsmasq it knows and the metadata server."""
        self.dnsmasq.remove(sorted(self.dnsmasq.known()))
        self.metadata.stop()


def restore_network(applier: DhcpApplier, current: DhcpState, network: Network
                    ) -> tuple[DhcpState, ApplyResult]:
    """restore-network: the network's DHCP, DNS and VM data replaced as one batch."""
    new = with_network(current, network)
    return new, applier.apply(current, new)


def _status(kind: str, object_id: str, error: str) -> ObjectStatus:
    return ObjectStatus(kind, object_id, not error, error)


def failed(result: ApplyResult) -> Iterable[ObjectStatus]:
    return (status for status in result.statuses if not status.ok)
