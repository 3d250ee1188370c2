"""python -m bench [--only sqlite|postgres|extension|frr|softgate] [--networks N] [--clients C]

Runs the allocation benchmark against a real `vxgate-service` (gunicorn, 2 workers) on
SQLite and on PostgreSQL. Per backend: C Python clients create N networks, every answer
and the final state are checked, and all N creations are replayed (bench/allocation.py);
then wrk drives creations for a fixed time (bench/wrk_load.py), which is the throughput
and latency figure the goals are judged on, the Python clients costing the service a
sixth of the machine's CPU. Then the extension entry-point, spawned as CloudStack spawns
it, against the service on SQLite (bench/extension.py). Then FRR config render times
and a live fabric's convergence (bench/frr.py). Then a SoftGate's full rebuild, 2,000 VMs
on the real kernel, nftables and dnsmasq (bench/softgate.py). Prints throughput, latency,
CPU use, checks, and per goal whether it was met. Exit status: 0 when every correctness check
passed (speed goals missed or not), 1 when a check failed, 2 when a service could not be run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bench import extension, extension_report, frr, softgate, sysinfo, wrk_load
from bench.allocation import GOAL_P99_MS, GOAL_RATE, AllocationReport, render, run_allocation
from bench.service import Service, ServiceError, reset_postgres_schema, running_service

POSTGRES_URL_ENV = "VXGATE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://vxgate:vxgate@127.0.0.1:5432/vxgate_bench"
BACKENDS = ("sqlite", "postgres")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=(*BACKENDS, "extension", "frr", "softgate"),
                        help="run one backend only, or only the extension entry-point bench, "
                             "or only the FRR render and fabric bench, or only the SoftGate "
                             "rebuild bench")
    parser.add_argument("--networks", type=int, default=10_000, help="networks to create")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--invocations", type=int, default=500,
                        help="extension bench: events per command")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per worker (default: the service's own default)")
    parser.add_argument("--wrk-seconds", type=int, default=5,
                        help="length of the wrk run (0: skip it)")
    parser.add_argument("--postgres-url", default=os.environ.get(POSTGRES_URL_ENV,
                                                                 DEFAULT_POSTGRES_URL),
                        help=f"emptied before the run (default: ${POSTGRES_URL_ENV} or "
                             f"{DEFAULT_POSTGRES_URL})")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.networks < 1:
        parser.error("--networks and --clients must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_facts(args)
    reports: list[AllocationReport] = []
    for backend in (name for name in BACKENDS if args.only in (None, name)):
        try:
            reports.append(run_backend(backend, args))
        except (ServiceError, OSError, RuntimeError) as exc:
            print(f"== {backend}: could not run: {exc}", file=sys.stderr)
            return 2
    extension_ok = True
    if args.only in (None, "extension"):
        try:
            extension_ok = run_extension(args)
        except (ServiceError, OSError, RuntimeError, ValueError) as exc:
            print(f"== extension: could not run: {exc}", file=sys.stderr)
            return 2
    if args.only in (None, "frr"):
        try:
            frr.run_frr_bench()
        except (OSError, RuntimeError) as exc:
            print(f"== frr: could not run: {exc}", file=sys.stderr)
            return 2
    softgate_ok = True
    if args.only in (None, "softgate"):
        try:
            outcome = softgate.run_softgate_bench()
        except (OSError, RuntimeError) as exc:  # ServiceRefused, SandboxError too
            print(f"== softgate: could not run: {exc}", file=sys.stderr)
            return 2
        softgate_ok = outcome is None or outcome.ok
    failed = [report.backend for report in reports if not report.ok]
    failed += [] if extension_ok else ["extension"]
    failed += [] if softgate_ok else ["softgate"]
    failed += [f"{backend} (wrk)" for backend, ok in _wrk_outcomes if not ok]
    print(f"correctness: {'FAILED on ' + ', '.join(failed) if failed else 'all checks passed'}")
    return 1 if failed else 0


def run_backend(backend: str, args: argparse.Namespace) -> AllocationReport:
    url = ""
    if backend == "postgres":
        url = args.postgres_url
        reset_postgres_schema(url)
    with running_service(url, workers=args.workers, threads=args.threads) as service:
        report = run_allocation(service, args.networks, args.clients)
        print("\n".join(render(report)), flush=True)
        if args.wrk_seconds > 0:
            _run_wrk(backend, service, args)
    return report


def run_extension(args: argparse.Namespace) -> bool:
    with running_service(workers=args.workers, threads=args.threads) as service:
        report = extension.run_extension(service, args.invocations)
        print("\n".join(extension_report.render(report)), flush=True)
    return report.ok


_wrk_outcomes: list[tuple[str, bool]] = []


def _run_wrk(backend: str, service: Service, args: argparse.Namespace) -> None:
    if not wrk_load.available():
        print("   wrk: not installed (set-up installs Debian's wrk); skipped")
        return
    results = wrk_load.run_wrk_series(service, args.wrk_seconds, args.clients)
    _wrk_outcomes.append((backend, all(result.ok for result in results)))
    print("\n".join(wrk_load.render(results, GOAL_RATE, GOAL_P99_MS)), flush=True)


def print_facts(args: argparse.Namespace) -> None:
    threads = args.threads or _service_default_threads()
    service = (f"vxgate-service: gunicorn {args.workers} workers x {threads} threads "
               f"(gthread), keep-alive; clients: {args.clients} Python processes with "
               f"1 persistent HTTP/1.1 connection each, then wrk with {args.clients} "
               f"connections")
    for name, value in sysinfo.facts({"setup": service}).items():
        print(f"{name:>20}: {value}")


def _service_default_threads() -> int:
    from provider_service.serve import parse_args as service_args

    threads: int = service_args([]).threads
    return threads


if __name__ == "__main__":
    sys.exit(main())
