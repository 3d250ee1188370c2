"""Start and stop a real `vxgate-service` (gunicorn) for a benchmark or a test.

    with running_service(database_url) as service:
        service.ok("PUT", "/v1/zones/1", {})

The service runs in its own session (so its own process group): stopping it signals that
group by id (SIGTERM, a bounded wait, then SIGKILL), never processes by name. Start-up is
awaited by polling /healthz against a deadline while watching the process for an early
exit, whose log is then quoted in the error.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30


class ServiceError(RuntimeError):
    """The service did not start, or answered something it must not."""


@dataclass(frozen=True)
class Service:
    """A running service: where it listens, its token, and its process group."""

    host: str
    port: int
    token: str
    pid: int  # the gunicorn master; also the id of the service's process group
    state_dir: Path
    log_path: Path
    database_url: str  # "" for the default SQLite file in state_dir
    workers: int
    threads: int

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url.startswith("postgresql") else "sqlite"

    @property
    def database_name(self) -> str:
        """The PostgreSQL database name; "" for SQLite."""
        if self.backend != "postgresql":
            return ""
        return self.database_url.rsplit("/", 1)[-1].split("?", 1)[0]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None,
             timeout: float = 60.0) -> tuple[int, Any]:
        """One request on a fresh connection: (status, decoded JSON body or None)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=payload, headers=self.headers())
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        return response.status, json.loads(raw) if raw else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a request that must succeed (2xx); ServiceError otherwise."""
        status, answer = self.call(method, path, body)
        if not 200 <= status < 300:
            raise ServiceError(f"{method} {path} -> {status}: {answer}")
        return answer

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


def service_command() -> list[str]:
    return [console_script("vxgate-service")]


def console_script(name: str) -> str:
    """One of our console scripts (vxgate-service, vxgate): this interpreter's virtual
    environment's (a worktree may share another checkout's), else the repo's, else PATH's.
    Run it with `with_this_checkout` so that it imports this checkout's code."""
    for candidate in (Path(sys.executable).parent / name, REPO / ".venv" / "bin" / name):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} not found: run scripts/setup.sh (pip install -e .)")
    return found


def with_this_checkout(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this checkout first on PYTHONPATH: a console script imports our packages
    through the virtual environment's editable install, which may point at another
    checkout (a git worktree sharing its venv would run that checkout's code)."""
    path = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    return {**env, "PYTHONPATH": path}


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_service(
    database_url: str = "",
    *,
    workers: int = 2,
    threads: int | None = None,
    state_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    unix_socket: Path | None = None,
) -> Iterator[Service]:
    """A started, healthy service; stopped (with its workers) when the block ends.

    `database_url` empty means SQLite in the state directory; a PostgreSQL database must
    exist (the service migrates it on start). `threads` None keeps the service's default.
    `unix_socket`: listen there too (agents in network namespaces reach it by path).
    """
    with tempfile.TemporaryDirectory(prefix="vxgate-service-") as scratch:
        directory = state_dir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        port = free_port()
        argv = _argv(port, workers, threads, directory, database_url)
        if unix_socket is not None:
            argv += ["--bind", f"unix:{unix_socket}"]
        log_path = directory / "service.log"
        process = _spawn(argv, log_path, _environment(token, extra_env))
        try:
            _wait_healthy(process, port, log_path, startup_timeout)
            yield Service(HOST, port, token, process.pid, directory, log_path, database_url,
                          workers, threads or _default_threads())
        finally:
            stop(process)


def stop_by_pid(service: Service, signum: signal.Signals = signal.SIGTERM,
                timeout: float = STOP_TIMEOUT_S) -> None:
    """Signal the service's process group (by its id) and wait until the master has
    exited: it then stays a zombie until running_service reaps it, its ports closed."""
    _signal_group(service.pid, signum)
    deadline = time.monotonic() + timeout
    while _running(service.pid):
        if time.monotonic() > deadline:
            raise ServiceError(f"vxgate-service {service.pid} still runs {timeout:.0f} s "
                               f"after signal {signum.name}")
        time.sleep(POLL_INTERVAL_S)


@contextmanager
def started_again(service: Service, unix_socket: Path | None = None,
                  startup_timeout: float = STARTUP_TIMEOUT_S) -> Iterator[Service]:
    """A stopped service started again as it was (port, token, state directory,
    database; `unix_socket` too, if it listened there), stopped when the block ends."""
    argv = _argv(service.port, service.workers, service.threads, service.state_dir,
                 service.database_url)
    if unix_socket is not None:
        argv += ["--bind", f"unix:{unix_socket}"]
    process = _spawn(argv, service.log_path, _environment(service.token, None))
    try:
        _wait_healthy(process, service.port, service.log_path, startup_timeout)
        yield dataclasses.replace(service, pid=process.pid)
    finally:
        stop(process)


def _running(pid: int) -> bool:
    """Whether the process exists and is no zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the service's process group, wait, then SIGKILL what is left of it."""
    group = process.pid  # start_new_session=True: the child leads its own group
    if process.poll() is None:
        _signal_group(group, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            process.wait()
    if _group_alive(group):  # workers that outlived their master
        _signal_group(group, signal.SIGKILL)


def reset_postgres_schema(url: str) -> None:
    """Empty a PostgreSQL database: DROP SCHEMA public CASCADE; CREATE SCHEMA public."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ServiceError(f"cannot empty PostgreSQL database {_redact(url)}: {reason}") from exc
    finally:
        engine.dispose()


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}" if at else url


def _argv(port: int, workers: int, threads: int | None, state_dir: Path, url: str) -> list[str]:
    argv = [*service_command(), "--bind", f"{HOST}:{port}", "--workers", str(workers),
            "--state-dir", str(state_dir)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if url:
        argv += ["--database-url", url]
    return argv


def _environment(token: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    # Settings of the caller's own environment (a developer's VXGATE_DATABASE_URL, say)
    # must not leak into the service under test.
    env = {key: value for key, value in os.environ.items() if not key.startswith("VXGATE_")}
    env["VXGATE_ADMIN_TOKEN"] = token
    env = with_this_checkout(env)
    env.update(extra or {})
    return env


def _spawn(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path,
                  timeout: float) -> None:
    """Poll /healthz until it answers 200; fail early if the service exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(port):
            return
        try:
            code = process.wait(timeout=POLL_INTERVAL_S)  # doubles as the exit watch
        except subprocess.TimeoutExpired:
            continue
        raise ServiceError(f"vxgate-service exited with {code} while starting:\n"
                           f"{_tail(log_path, LOG_TAIL_LINES)}")
    stop(process)
    raise ServiceError(f"vxgate-service not healthy after {timeout:.0f} s:\n"
                       f"{_tail(log_path, LOG_TAIL_LINES)}")


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _signal_group(group: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _default_threads() -> int:
    from provider_service.serve import parse_args

    threads: int = parse_args([]).threads
    return threads


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
