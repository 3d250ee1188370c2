"""Pure helpers of the renderer: disjoint boxes, load-balancer slots, leastconn weights."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from ipaddress import IPv4Address

from agent import netfilter_boxes as boxes
from agent.netfilter_lb import SLOTS, leastconn_weights, slot_owners
from agent.netfilter_state import Backend, LoadBalancer


def _points(box_list: list[boxes.Box]) -> Counter[tuple[int, ...]]:
    return Counter(point for box in box_list
                   for point in itertools.product(*(range(lo, hi + 1) for lo, hi in box)))


def test_disjoint_boxes_cover_exactly_the_union_once() -> None:
    rng = random.Random(7)
    for _ in range(200):
        inputs = []
        for _ in range(rng.randint(1, 6)):
            box = []
            for _ in range(3):
                low = rng.randint(0, 6)
                box.append((low, rng.randint(low, 7)))
            inputs.append(tuple(box))
        result = boxes.disjoint(inputs)
        covered = _points(result)
        assert set(covered) == set(_points(inputs))
        assert max(covered.values()) == 1  # no point twice: the kernel would refuse it


def test_disjoint_is_independent_of_input_order() -> None:
    a, b = ((0, 10), (22, 22)), ((5, 5), (20, 25))
    assert boxes.disjoint([a, b]) == boxes.disjoint([b, a])


def _backends(count: int, **kwargs: object) -> tuple[Backend, ...]:
    return tuple(Backend(IPv4Address(f"10.0.0.{i + 1}"), 80, **kwargs)  # type: ignore[arg-type]
                 for i in range(count))


def test_equal_backends_share_slots_exactly_and_interleave() -> None:
    owners = slot_owners(_backends(3))
    assert len(owners) == SLOTS
    assert set(Counter(owners).values()) == {SLOTS // 3}
    assert all(a != b for a, b in itertools.pairwise(owners))  # consecutive differ


def test_seven_backends_stay_within_one_slot_of_each_other() -> None:
    counts = Counter(slot_owners(_backends(7))).values()
    assert max(counts) - min(counts) <= 1


def test_dead_backends_get_no_slots() -> None:
    backends = (*_backends(2), Backend(IPv4Address("10.0.0.9"), 80, alive=False))
    owners = slot_owners(backends)
    assert backends[2] not in owners and len(set(owners)) == 2
    assert slot_owners(_backends(2, alive=False)) == ()


def test_weights_set_the_shares() -> None:
    light, heavy = Backend(IPv4Address("10.0.0.1"), 80, weight=1), \
        Backend(IPv4Address("10.0.0.2"), 80, weight=3)
    counts = Counter(slot_owners((light, heavy)))
    assert counts[light] == SLOTS // 4 and counts[heavy] == 3 * SLOTS // 4


def test_leastconn_weights_favour_the_least_loaded() -> None:
    lb = LoadBalancer("1", IPv4Address("203.0.113.1"), 80, "tcp", "leastconn", _backends(3))
    active = {(IPv4Address("10.0.0.1"), 80): 0, (IPv4Address("10.0.0.2"), 80): 9}
    weighted = leastconn_weights(lb, active)
    weights = [b.weight for b in weighted.backends]
    assert weights[0] == weights[2] > weights[1] >= 1
    counts = Counter(slot_owners(weighted.backends))
    assert counts[weighted.backends[1]] < counts[weighted.backends[0]]


def test_leastconn_weights_leave_other_algorithms_alone() -> None:
    lb = LoadBalancer("1", IPv4Address("203.0.113.1"), 80, "tcp", "roundrobin", _backends(2))
    assert leastconn_weights(lb, {(IPv4Address("10.0.0.1"), 80): 50}) is lb


def test_conntrack_listing_counts_reply_sources() -> None:
    from agent.conntrack import reply_sources

    listing = (
        "tcp      6 431999 ESTABLISHED src=198.51.100.1 dst=203.0.113.4 sport=40000 "
        "dport=80 src=10.0.0.1 dst=198.51.100.1 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
        "tcp      6 431999 ESTABLISHED src=198.51.100.1 dst=203.0.113.4 sport=40001 "
        "dport=80 src=10.0.0.1 dst=198.51.100.1 sport=80 dport=40001 [ASSURED] mark=0 use=1\n"
        "tcp      6 431999 ESTABLISHED src=192.0.2.10 dst=203.0.113.4 sport=40002 "
        "dport=80 src=10.0.0.2 dst=192.0.2.10 sport=80 dport=40002 [ASSURED] mark=0 use=1\n"
        "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n")
    counts = reply_sources(listing)
    assert counts == {(IPv4Address("10.0.0.1"), 80): 2, (IPv4Address("10.0.0.2"), 80): 1}
    lb = LoadBalancer("1", IPv4Address("203.0.113.4"), 80, "tcp", "leastconn", _backends(2))
    weights = [b.weight for b in leastconn_weights(lb, counts).backends]
    assert weights[1] > weights[0]
