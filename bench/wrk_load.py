"""Network-creation throughput and latency measured with wrk.

The Python clients of bench/load.py prove correctness, but each request costs them
~0.17 ms of CPU, a sixth of this 2-core machine at 2,000 requests/s, taken from the
service under test. wrk (C, epoll) costs a fraction of that, so it measures the service
rather than the client. It runs for a fixed time with 8 connections over 2 threads, each
connection creating networks with fresh ids; afterwards the pool must have grown by the
number of 2xx answers, plus at most one request per connection still in flight when wrk
stopped. It runs three times and the goals are judged on the median run: this virtual
machine has slow spells (a run in three, seen often) that a single run would either hit
or hide.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.allocation import PHYSNET_ID, pool_usage
from bench.service import Service

# Each wrk thread numbers its networks from its own base; the token comes from the
# environment so it never appears on a command line.
LUA = r"""
local next_base = 0
function setup(thread)
  thread:set("base", next_base)
  next_base = next_base + 10000000
end
function init(args)
  counter = 0
  headers = {["Authorization"] = "Bearer " .. os.getenv("VXGATE_BENCH_TOKEN"),
             ["Content-Type"] = "application/json"}
end
function request()
  counter = counter + 1
  local i = base + counter
  local a, b = math.floor(i / 256) % 256, i % 256
  local body = string.format(
    '{"zone_id":"1","cidr":"10.%d.%d.0/24","gateway":"10.%d.%d.1"}', a, b, a, b)
  return wrk.format("PUT", "/v1/networks/wrk-" .. i, headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "vxgate-wrk requests=%d duration_us=%d non2xx=%d socket_errors=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
_RESULT = re.compile(r"vxgate-wrk (.*)")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    pool_growth: int
    connections: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        created = self.requests - self.non_2xx
        in_flight = self.pool_growth - created
        return self.non_2xx == 0 and self.socket_errors == 0 and 0 <= in_flight <= self.connections


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk_series(service: Service, seconds: int, connections: int,
                   runs: int = 3) -> list[WrkResult]:
    return [run_wrk(service, seconds, connections, offset=run) for run in range(runs)]


def median_run(results: list[WrkResult]) -> WrkResult:
    return sorted(results, key=lambda result: result.rate)[len(results) // 2]


def run_wrk(service: Service, seconds: int, connections: int, threads: int = 2,
            offset: int = 0) -> WrkResult:
    """One run; `offset` keeps the network ids of consecutive runs apart."""
    before = pool_usage(service)["l2vni"]
    with tempfile.TemporaryDirectory(prefix="vxgate-wrk-") as scratch:
        script = Path(scratch) / "create.lua"
        script.write_text(LUA.replace("next_base = 0", f"next_base = {offset * 10 ** 9}"),
                          encoding="ascii")
        completed = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", str(script), f"http://{service.host}:{service.port}"],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
            env={"VXGATE_BENCH_TOKEN": service.token, "PATH": "/usr/bin:/bin"},
        )
    match = _RESULT.search(completed.stdout)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): "
                           f"{(completed.stderr or completed.stdout).strip()[:300]}")
    fields = dict(item.split("=") for item in match.group(1).split())
    return WrkResult(
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        non_2xx=int(fields["non2xx"]),
        socket_errors=int(fields["socket_errors"]),
        p50_ms=int(fields["p50_us"]) / 1000, p90_ms=int(fields["p90_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000, max_ms=int(fields["max_us"]) / 1000,
        pool_growth=pool_usage(service)["l2vni"] - before,
        connections=connections,
    )


def render(results: list[WrkResult], goal_rate: float, goal_p99_ms: float) -> list[str]:
    lines = []
    for number, result in enumerate(results, 1):
        created = result.requests - result.non_2xx
        lines += [
            f"   wrk {number}: {result.requests} creates in {result.seconds:.3f} s = "
            f"{result.rate:,.0f} allocations/s; latency ms p50 {result.p50_ms:.2f}  "
            f"p90 {result.p90_ms:.2f}  p99 {result.p99_ms:.2f}  max {result.max_ms:.2f}",
            f"check {'ok  ' if result.ok else 'FAIL'} wrk {number}: {created} created "
            f"(non-2xx {result.non_2xx}, socket errors {result.socket_errors}), pool "
            f"{PHYSNET_ID} l2vni grew by {result.pool_growth}",
        ]
    median = median_run(results)
    rates = ", ".join(f"{result.rate:,.0f}" for result in results)
    return [
        *lines,
        f"   wrk median run: {median.rate:,.0f} allocations/s, p99 {median.p99_ms:.2f} ms "
        f"(runs: {rates}/s; mean {statistics.fmean(r.rate for r in results):,.0f}/s)",
        f"goal {'met   ' if median.rate >= goal_rate else 'MISSED'} >= {goal_rate:,.0f} "
        f"allocations/s (wrk median run): {median.rate:,.0f}",
        f"goal {'met   ' if median.p99_ms <= goal_p99_ms else 'MISSED'} p99 <= "
        f"{goal_p99_ms:g} ms (wrk median run): {median.p99_ms:.2f} ms",
    ]
