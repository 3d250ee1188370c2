"""Prometheus metrics: what the service counts as it works, and the exposition of /metrics.

Counts kept in memory are per process, and gunicorn runs several workers: a scrape
reaches one of them. We use prometheus_client's multiprocess mode (each worker writes its
counters and histograms to memory-mapped files in PROMETHEUS_MULTIPROC_DIR, a scrape sums
every file; see metrics_setup) rather than counting in the database: counting there would
add a write to every event and every status report (on SQLite, the one writer lock
everyone queues on), and would make each of several services on one PostgreSQL report the
whole cluster's counts, which Prometheus would then add up twice. Without that variable
(tests that build the app in-process) the counts live in this process, which then is the
only one.

What the database knows (pool usage, device generations and errors) is not counted here
at all: metrics_db reads it at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from provider_service.metrics_setup import MULTIPROC_ENV

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("ok", "rejected", "failed")  # 2xx; 4xx (bad input, unknown ids); 5xx
# A label value must come from a known set: a command name is a URL path segment anyone
# with the token may choose, and every new value would be a new time series.
OTHER_COMMAND = "unknown"
# Most events take milliseconds; restore-network of a big network, seconds.
EVENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From a change stored to its report: a long-poll answers at once, an apply takes seconds;
# a failed apply retries with backoff up to a minute, a dead agent never reports.
APPLY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# The multiprocess mode has no *_created samples; the in-process one should not differ.
disable_created_metrics()  # type: ignore[no-untyped-call]
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
EVENTS = Counter("vxgate_events", "CloudStack extension events handled, by command and "
                 "outcome (ok, rejected: 4xx, failed: 5xx)", ("command", "outcome"),
                 registry=PROCESS_REGISTRY)
EVENT_DURATION = Histogram("vxgate_event_duration_seconds", "Time to handle one CloudStack "
                           "extension event in the service", ("command",),
                           buckets=EVENT_BUCKETS, registry=PROCESS_REGISTRY)
APPLY_LATENCY = Histogram("vxgate_apply_latency_seconds", "Time from an artifact's new "
                          "generation being stored to its agent reporting it applied",
                          ("role", "artifact"), buckets=APPLY_BUCKETS,
                          registry=PROCESS_REGISTRY)


def outcome_of(status: int) -> str:
    return "ok" if status < 400 else "rejected" if status < 500 else "failed"


def observe_event(command: str, known: bool, status: int, seconds: float) -> None:
    """One event; `known`: the command is one of ours (else it counts as "unknown")."""
    label = command if known else OTHER_COMMAND
    EVENTS.labels(label, outcome_of(status)).inc()
    EVENT_DURATION.labels(label).observe(seconds)


def observe_apply_latencies(role: str, latencies: Iterable[tuple[str, float]]) -> None:
    for artifact, seconds in latencies:
        APPLY_LATENCY.labels(role, artifact).observe(max(0.0, seconds))


def exposition(extra: Collector) -> bytes:
    """The text of one scrape: every worker's counts and `extra` (read from the
    database now)."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(PROCESS_REGISTRY))
    registry.register(extra)
    return generate_latest(registry)


class _Forward:
    """This process's own counts (no multiprocess directory)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
