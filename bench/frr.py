"""FRR config figures: render time at scale, and a live fabric's convergence.

1. Rendering (the pure function, the goal): a SoftGate serving 4,000 networks in 1,000
   VPCs (goal <= 50 ms) and a hypervisor in a zone with 4,000 VNIs (goal <= 20 ms);
   median and max of repeated renders.
2. The same two devices rendered by the service, from a SQLite database holding those
   1,000 VPCs and 4,000 tiers: compile (queries) + render, as GET /config does it.
3. The live fabric of tests/scenarios (simulator/evpn_fabric.py), started RUNS times:
   seconds from starting the daemons to all sessions Established and to all routes
   present. Needs root and FRR; skipped with the reason otherwise.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provider_service.frr_intent import (
    EvpnSegment,
    FrrIntent,
    TenantVrf,
    UpstreamSession,
    route_target,
    vrf_name,
)
from provider_service.frr_render import render_frr
from simulator import evpn_fabric
from simulator.fabric import missing_prerequisites
from simulator.local_service import Request, in_process_service

VPCS, TIERS_PER_VPC = 1_000, 4
GOAL_SOFTGATE_MS, GOAL_HYPERVISOR_MS = 50.0, 20.0
REPEATS = 30
FABRIC_RUNS = 3


def softgate_intent() -> FrrIntent:
    segments, vrfs = [], []
    for vpc in range(VPCS):
        l3vni = 5_000_000 + vpc
        cidrs = tuple(f"10.{tier}.{vpc % 250}.0/24" for tier in range(TIERS_PER_VPC))
        vrfs.append(TenantVrf(vrf_name(l3vni), l3vni, route_target(65000, l3vni), cidrs))
        segments += [EvpnSegment(vni, route_target(65000, vni))
                     for vni in range(10_000 + vpc * TIERS_PER_VPC,
                                      10_000 + (vpc + 1) * TIERS_PER_VPC)]
    return FrrIntent(
        hostname="sg1", role="softgate", asn=4_200_000_001, router_id="10.255.2.1",
        fabric_interfaces=("uplink1", "uplink2"), vrf_backend="netns", vtep=True,
        gateway=True, segments=tuple(segments), vrfs=tuple(vrfs),
        upstream_peers=(UpstreamSession("198.51.100.1", 64496, True),),
        announced_prefixes=("203.0.113.0/24",),
    )


def hypervisor_intent(vnis: int) -> FrrIntent:
    return FrrIntent(
        hostname="hv1", role="hypervisor", asn=4_200_000_002, router_id="10.255.1.1",
        fabric_interfaces=("uplink1", "uplink2"), vrf_backend="netns", vtep=True,
        gateway=False,
        segments=tuple(EvpnSegment(vni, route_target(65000, vni))
                       for vni in range(10_000, 10_000 + vnis)),
    )


def timed_ms(function: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """(median, max) wall time of `function` in milliseconds, after one warm-up call."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def verdict(value: float, goal: float) -> str:
    return "PASS" if value <= goal else "FAIL"


def bench_render() -> bool:
    softgate, hypervisor = softgate_intent(), hypervisor_intent(VPCS * TIERS_PER_VPC)
    lines = render_frr(softgate).count("\n"), render_frr(hypervisor).count("\n")
    sg_median, sg_max = timed_ms(lambda: render_frr(softgate))
    hv_median, hv_max = timed_ms(lambda: render_frr(hypervisor))
    print("== FRR render (pure function, median / max of", REPEATS, "renders)")
    print(f"  SoftGate, {VPCS * TIERS_PER_VPC} networks in {VPCS} VPCs ({lines[0]} lines): "
          f"{sg_median:.1f} / {sg_max:.1f} ms   goal <= {GOAL_SOFTGATE_MS:.0f} ms  "
          f"{verdict(sg_median, GOAL_SOFTGATE_MS)}")
    print(f"  hypervisor, {VPCS * TIERS_PER_VPC} VNIs ({lines[1]} lines): "
          f"{hv_median:.1f} / {hv_max:.1f} ms   goal <= {GOAL_HYPERVISOR_MS:.0f} ms  "
          f"{verdict(hv_median, GOAL_HYPERVISOR_MS)}")
    return sg_median <= GOAL_SOFTGATE_MS and hv_median <= GOAL_HYPERVISOR_MS


def bench_service_render() -> None:
    with tempfile.TemporaryDirectory() as directory, \
            in_process_service(Path(directory)) as request:
        start = time.perf_counter()
        _seed(request)
        seeded = time.perf_counter() - start
        for device in ("sg1", "hv1"):
            path = f"/v1/devices/{device}/config"
            request("GET", path, None)  # the first render stores the artifact
            median, worst = timed_ms(functools.partial(request, "GET", path, None), repeats=10)
            print(f"  service GET {path} (compile from SQLite + render + compare): "
                  f"{median:.0f} / {worst:.0f} ms")
        print(f"  (seeding {VPCS} VPCs and {VPCS * TIERS_PER_VPC} tiers took {seeded:.1f} s)")


def _seed(call: Request) -> None:
    call("PUT", "/v1/zones/1", {"name": "bench"})
    call("PUT", "/v1/physical-networks/200", {"zone_id": "1"})
    for name, role, loopback in (("sg1", "softgate", "10.255.2.1"),
                                 ("hv1", "hypervisor", "10.255.1.1")):
        call("PUT", f"/v1/devices/{name}", {"zone_id": "1", "role": role, "loopback": loopback,
                                            "uplinks": [{"interface": "uplink1"}]})
    for vpc in range(VPCS):
        call("PUT", f"/v1/vpcs/vpc{vpc}", {"zone_id": "1", "cidr": "10.0.0.0/8",
                                            "physical_network_id": "200"})
        for tier in range(TIERS_PER_VPC):
            call("PUT", f"/v1/networks/vpc{vpc}-t{tier}", {
                "zone_id": "1", "physical_network_id": "200", "vpc_id": f"vpc{vpc}",
                "cidr": f"10.{tier}.0.0/24", "gateway": f"10.{tier}.0.1"})


def bench_fabric() -> bool:
    reason = missing_prerequisites()
    if reason:
        print(f"== live fabric: skipped: {reason}")
        return True
    established, converged = [], []
    for _ in range(FABRIC_RUNS):
        with evpn_fabric.running() as small:
            established.append(small.timings["all sessions established"])
            converged.append(small.timings["all routes present"])
    print(f"== live fabric (spine, 2 hypervisors, SoftGate, upstream; {FABRIC_RUNS} runs)")
    print("  seconds from daemon start:  all sessions Established "
          f"{', '.join(f'{t:.2f}' for t in established)} (median "
          f"{statistics.median(established):.2f});  all type-2/3/5 and upstream routes "
          f"{', '.join(f'{t:.2f}' for t in converged)} (median "
          f"{statistics.median(converged):.2f})")
    return True


def run_frr_bench() -> bool:
    ok = bench_render()
    bench_service_render()
    return bench_fabric() and ok


if __name__ == "__main__":
    raise SystemExit(0 if run_frr_bench() else 1)
