"""Load balancing with nftables alone: backends spread over a fixed number of slots.

This kernel has no IPVS, so a load balancer is a DNAT whose target comes from a map
keyed by (VIP, protocol, port, slot). The slot is `numgen inc mod SLOTS` (roundrobin,
leastconn) or `jhash ip saddr mod SLOTS` (source), so the nft rules never change with
the number of backends: only map elements do. Each alive backend owns a share of the
SLOTS slots proportional to its weight; dead backends own none.

SLOTS = 120 is divisible by 1-6, 8, 10, 12, 15, 20, 24, 30, 40, 60: with that many equal
backends every one gets the same share and roundrobin is exact. With 7 backends the
shares are 17 or 18 slots (within 6%). Slots are interleaved (smooth weighted round
robin) so that consecutive new connections go to different backends.

leastconn, honestly: the kernel has no "fewest connections" choice for a DNAT target.
The agent approximates it: it counts each backend's active connections in conntrack
(agent.conntrack) and sets weights inversely to them (`leastconn_weights`); between two
refreshes new connections are spread by those weights, like a weighted roundrobin.
Established connections are never moved: NAT is decided on a connection's first packet
and conntrack carries it afterwards, so changing slots only affects new connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from agent.netfilter_state import MAX_WEIGHT, Backend, IPv4, LoadBalancer

SLOTS: Final = 120
LEASTCONN_NOTE: Final = ("leastconn approximated: weights inverse to conntrack counts, "
                         "refreshed by the agent; roundrobin between refreshes")


def slot_owners(backends: tuple[Backend, ...]) -> tuple[Backend, ...]:
    """The backend of each slot 0..SLOTS-1, or () when no backend is alive.

    Smooth weighted round robin: each step every backend gains its weight, the richest
    takes the slot and pays the total. Over SLOTS steps each gets a share proportional
    to its weight (exactly, when the total divides SLOTS), spread evenly."""
    alive = sorted(b for b in backends if b.alive)
    if not alive:
        return ()
    total = sum(b.weight for b in alive)
    credit = [0] * len(alive)
    owners: list[Backend] = []
    for _ in range(SLOTS):
        for i, backend in enumerate(alive):
            credit[i] += backend.weight
        richest = max(range(len(alive)), key=lambda i: (credit[i], -i))
        credit[richest] -= total
        owners.append(alive[richest])
    return tuple(owners)


def leastconn_weights(lb: LoadBalancer,
                      active: Mapping[tuple[IPv4, int], int]) -> LoadBalancer:
    """`lb` with weights inverse to each backend's active connection count: the least
    loaded backend gets MAX_WEIGHT, one with k times its connections about 1/k of that.
    Other algorithms are returned unchanged."""
    if lb.algorithm != "leastconn":
        return lb
    counts = {(b.ip, b.port): max(0, active.get((b.ip, b.port), 0)) for b in lb.backends}
    floor = min(counts.values(), default=0) + 1
    backends = tuple(
        replace(b, weight=max(1, min(MAX_WEIGHT, round(MAX_WEIGHT * floor
                                                        / (counts[(b.ip, b.port)] + 1)))))
        for b in lb.backends)
    return replace(lb, backends=backends)
