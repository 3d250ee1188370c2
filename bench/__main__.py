"""python -m bench [--only sqlite|postgres] [--networks N] [--clients C]

Runs the allocation benchmark against a real `vxgate-service` (gunicorn, 2 workers) on
SQLite and on PostgreSQL, prints throughput, latency, CPU use and the correctness checks,
and says per goal whether it was met. Exit status: 0 when every correctness check passed
(speed goals missed or not), 1 when a check failed, 2 when a service could not be run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bench import sysinfo
from bench.allocation import AllocationReport, render, run_allocation
from bench.service import ServiceError, reset_postgres_schema, running_service

POSTGRES_URL_ENV = "VXGATE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://vxgate:vxgate@127.0.0.1:5432/vxgate_bench"
BACKENDS = ("sqlite", "postgres")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=BACKENDS, help="run one backend only")
    parser.add_argument("--networks", type=int, default=10_000, help="networks to create")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per worker (default: the service's own default)")
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
    for backend in BACKENDS if args.only is None else (args.only,):
        try:
            reports.append(run_backend(backend, args))
        except (ServiceError, OSError, RuntimeError) as exc:
            print(f"== {backend}: could not run: {exc}", file=sys.stderr)
            return 2
        print("\n".join(render(reports[-1])), flush=True)
    failed = [report.backend for report in reports if not report.ok]
    print(f"correctness: {'FAILED on ' + ', '.join(failed) if failed else 'all checks passed'}")
    return 1 if failed else 0


def run_backend(backend: str, args: argparse.Namespace) -> AllocationReport:
    url = ""
    if backend == "postgres":
        url = args.postgres_url
        reset_postgres_schema(url)
    with running_service(url, workers=args.workers, threads=args.threads) as service:
        return run_allocation(service, args.networks, args.clients)


def print_facts(args: argparse.Namespace) -> None:
    threads = args.threads or _service_default_threads()
    worker_class = "gthread" if threads > 1 else "sync"
    service = (f"vxgate-service: gunicorn {args.workers} workers x {threads} threads "
               f"({worker_class}), keep-alive; client: {args.clients} processes, "
               f"1 persistent HTTP/1.1 connection each")
    for name, value in sysinfo.facts({"setup": service}).items():
        print(f"{name:>20}: {value}")


def _service_default_threads() -> int:
    from provider_service.serve import parse_args as service_args

    threads: int = service_args([]).threads
    return threads


if __name__ == "__main__":
    sys.exit(main())
