"""python -m bench.links [--domains N] [--segments K]: the links applier's figures (root).

A SoftGate with N routing domains of K segments each (default 200 x 2: per domain a
namespace, an uplink veth pair, an L3VNI and K L2VNIs, each a VXLAN + bridge, gateway
addresses, default routes, and two SoftGate routes), applied through the real kernel:

1. from empty;
2. again with no change, same process (handles warm);
3. again with no change by a fresh applier and fresh netlink handles (an agent restart);
4. one segment added to one domain;
5. everything removed (an empty state).

It runs inside simulator.sandbox: a throw-away namespace `vxt<pid>-sg` as the SoftGate,
with a private /run/netns, so the N `vxr*` namespaces never reach the host's and all die
with the run. Exit status: 0 when every apply reported ok and the no-change applies
changed nothing, 1 otherwise, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from agent.ipr import Ipr
from agent.links_apply import ApplyResult, LinksApplier
from agent.links_state import LinksState
from simulator.sandbox import SandboxError, require_sandbox, run_module
from tests.unit.links_samples import links_json, segment_json


def timed(ipr: Ipr, state: dict[str, Any]) -> tuple[float, ApplyResult]:
    desired = LinksState.from_json(state)
    start = time.perf_counter()
    result = LinksApplier(ipr).apply(desired)
    return time.perf_counter() - start, result


def inside(domains: int, segments: int) -> dict[str, Any]:
    require_sandbox()
    state = links_json(domains, segments)
    grown = json.loads(json.dumps(state))
    grown["domains"][0]["segments"].append(segment_json(1, segments, 5_000_011 + segments, 0, 1))
    empty = dict(state, domains=[], blackholes=[])
    rows: list[dict[str, Any]] = []
    good = True
    with Ipr() as ipr:
        for name, wanted, handles in (("from empty", state, ipr), ("no change", state, ipr),
                                      ("no change, fresh agent", state, None),
                                      ("one segment added", grown, ipr),
                                      ("remove all", empty, ipr)):
            if handles is None:
                with Ipr() as fresh:
                    seconds, result = timed(fresh, wanted)
            else:
                seconds, result = timed(handles, wanted)
            good &= result.ok and (bool(result.changes) != name.startswith("no change"))
            rows.append({"step": name, "seconds": round(seconds, 3),
                         "changes": len(result.changes), "ok": result.ok,
                         "errors": [s.reason for s in result.statuses if s.state != "ok"][:3]})
    return {"domains": domains, "segments": segments, "rows": rows, "good": good}


def report(answer: dict[str, Any]) -> None:
    print(f"links apply: {answer['domains']} domains x {answer['segments']} segments, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    for row in answer["rows"]:
        per = row["seconds"] / answer["domains"] * 1000
        print(f"  {row['step']:<24} {row['seconds']:>8.3f} s  {per:>6.2f} ms/domain  "
              f"{row['changes']:>6} changes  {'ok' if row['ok'] else 'ERRORS'} "
              f"{' '.join(row['errors'])}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.links", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.domains <= 999 or not 0 <= args.segments <= 8:
        parser.error("--domains must be 1-999 and --segments 0-8")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.inside:
        print(json.dumps(inside(args.domains, args.segments)))
        return 0
    if os.geteuid() != 0:
        print("bench.links needs root (network namespaces)", file=sys.stderr)
        return 2
    try:
        run = run_module("bench.links", "--inside", "--domains", str(args.domains),
                         "--segments", str(args.segments), timeout=600)
    except (SandboxError, OSError) as exc:
        print(f"bench.links could not run: {exc}", file=sys.stderr)
        return 2
    if run.returncode != 0 or not run.stdout.strip():
        print(f"bench.links failed inside the sandbox:\n{run.stderr}", file=sys.stderr)
        return 2
    answer = json.loads(run.stdout)
    report(answer)
    print(f"  sandbox cleaned up: {'yes' if not run.leftovers else run.leftovers}")
    return 0 if answer["good"] and not run.leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
