"""Load generation: client processes, each with ONE persistent HTTP/1.1 connection.

Every client process gets the whole list of prepared requests, connects (a GET /healthz,
not timed) and reports ready. In each phase the parent asks for, the clients take the
next request from a shared counter until the list is done, so C requests are in flight
and a client whose connection landed on a less busy server worker simply does more of
them (gunicorn does not balance long-lived connections over its workers; a static share
per client would leave one worker idle while the other finishes). Every request is timed
with perf_counter_ns. A connection stays open across phases; a client counts every
connection it opens, so the caller can check that keep-alive really held.
"""

from __future__ import annotations

import http.client
import multiprocessing
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

Counter = Any  # multiprocessing.Value('q'): the next request to take (shared)

MAX_FAILURES_KEPT = 5
CLIENT_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""


@dataclass
class ClientResult:
    """What one client saw in one phase: per request it ran, in the order it ran them."""

    indices: list[int] = field(default_factory=list)  # positions in the request list
    statuses: list[int] = field(default_factory=list)  # 0: no HTTP answer at all
    latencies_ns: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the first few non-2xx, described
    started_ns: int = 0
    finished_ns: int = 0
    cpu_s: float = 0.0  # this client process's CPU time during the phase
    connections_opened: int = 0  # during the phase; 0 when the warm-up connection held


class _Client:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT_S)
        self.headers = headers

    def warm_up(self) -> None:
        self.connection.request("GET", "/healthz")
        self.connection.getresponse().read()

    def run(self, requests: Sequence[Request], counter: Counter) -> ClientResult:
        result = ClientResult()
        cpu_before = time.process_time()
        result.started_ns = time.perf_counter_ns()
        while (index := _take(counter)) < len(requests):
            result.indices.append(index)
            self._one(requests[index], result)
        result.finished_ns = time.perf_counter_ns()
        result.cpu_s = time.process_time() - cpu_before
        return result

    def _one(self, request: Request, result: ClientResult) -> None:
        if self.connection.sock is None:
            result.connections_opened += 1  # http.client reconnects on its own
        started = time.perf_counter_ns()
        try:
            self.connection.request(request.method, request.path, request.body, self.headers)
            response = self.connection.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            status, body = 0, f"{type(exc).__name__}: {exc}".encode()
        result.latencies_ns.append(time.perf_counter_ns() - started)
        result.statuses.append(status)
        result.bodies.append(body)
        if not 200 <= status < 300 and len(result.failures) < MAX_FAILURES_KEPT:
            result.failures.append(f"{request.method} {request.path} -> {status}: "
                                   f"{body[:300].decode(errors='replace').strip()}")

    def close(self) -> None:
        self.connection.close()


def _take(counter: Counter) -> int:
    with counter.get_lock():
        index: int = counter.value
        counter.value = index + 1
    return index


def _client_main(host: str, port: int, headers: dict[str, str], requests: list[Request],
                 counter: Counter, pipe: Connection) -> None:
    client = _Client(host, port, headers)
    try:
        client.warm_up()
        pipe.send("ready")
        while pipe.recv() == "run":
            pipe.send(client.run(requests, counter))
    except BaseException as exc:  # tell the parent rather than leave it waiting
        with suppress(OSError):
            pipe.send(f"client failed: {type(exc).__name__}: {exc}")
    finally:
        client.close()


class ClientPool:
    """C client processes, started once; `run_phase()` runs every request once."""

    def __init__(self, host: str, port: int, headers: dict[str, str],
                 requests: Sequence[Request], clients: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._counter: Counter = context.Value("q", 0)
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for _ in range(clients):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_client_main, daemon=True, args=(
                host, port, headers, list(requests), self._counter, child_end))
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)

    def __enter__(self) -> ClientPool:
        try:
            for pipe in self._pipes:
                _expect(_receive(pipe), str)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def run_phase(self) -> list[ClientResult]:
        with self._counter.get_lock():
            self._counter.value = 0
        for pipe in self._pipes:
            pipe.send("run")
        return [_expect(_receive(pipe), ClientResult) for pipe in self._pipes]

    def close(self) -> None:
        for pipe in self._pipes:
            with suppress(OSError):  # that client is gone already
                pipe.send("stop")
        for process in self._processes:
            process.join(JOIN_TIMEOUT_S)
            if process.is_alive():  # our own child, by its pid
                process.kill()
                process.join()


def _receive(pipe: Connection) -> object:
    try:
        return pipe.recv()
    except EOFError:
        raise RuntimeError("a client process exited without a word (see its stderr)") from None


def _expect(message: object, kind: type[Any]) -> Any:
    if isinstance(message, str) and message.startswith("client failed"):
        raise RuntimeError(message)
    if not isinstance(message, kind):
        raise RuntimeError(f"unexpected message from a client: {message!r}")
    return message


def in_request_order(results: Sequence[ClientResult], values: str) -> list[Any]:
    """One attribute of the clients' results (`statuses`, `bodies`, ...) per request,
    in the order of the request list."""
    merged: list[Any] = [None] * sum(len(result.indices) for result in results)
    for result in results:
        for index, value in zip(result.indices, getattr(result, values), strict=True):
            merged[index] = value
    return merged
