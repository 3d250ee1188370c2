"""Database access: engines, sessions, and the write unit of work with retries.

SQLite (WAL) is the default and PostgreSQL the HA option; code above this module does not
care which. Writers on SQLite start with BEGIN IMMEDIATE so two gunicorn workers never
deadlock upgrading a read lock to a write lock; readers use a plain deferred BEGIN.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from provider_service.errors import Conflict, Unavailable
from provider_service.sql import Sql

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_ATTEMPTS = 6
# Last in every desired-state write: on PostgreSQL the row lock is then held only from
# here to the commit, and no transaction waits for it while holding another lock. An
# upsert: the one row need not be seeded (a truncated test database has none).
_BUMP_VERSION = ("INSERT INTO state_version (id, version) VALUES (1, 1) ON CONFLICT (id)"
                 " DO UPDATE SET version = state_version.version + 1")
_READ_VERSION = "SELECT version FROM state_version WHERE id = 1"
# PostgreSQL SQLSTATEs that mean "another transaction got in the way, try again".
_PG_RETRY_SQLSTATES = {"40001", "40P01"}


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._writer_queue: _WriterQueue | None = None
        if self.is_sqlite:
            self._write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE", echo)
            self._read_engine = _sqlite_engine(url, "BEGIN", echo)
            database = self._write_engine.url.database
            if database and database != ":memory:":
                self._writer_queue = _WriterQueue(database + ".writer-lock")
        else:
            # No pre-ping (a round trip per checkout); a connection found dead is a retry.
            engine = create_engine(url, echo=echo, pool_size=5, max_overflow=10,
                                   pool_recycle=3600)
            self._write_engine = self._read_engine = engine
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._write_engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        try:
            with self._reader() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise Unavailable(f"database error: {_first_line(exc.orig)}") from exc

    def write(self, work: Callable[[Session], T], *, desired_state: bool = True) -> T:
        """Run `work` in one write transaction. `desired_state=False` for writes that
        only record what devices did or were sent (artifacts, status): they must not
        wake the agents that wait for desired-state changes."""
        return self._retrying(lambda: self._in_session(work, desired_state))

    def write_sql(self, work: Callable[[Sql], T]) -> T:
        """Like write(), for work that is plain SQL only: no ORM session to build and
        flush, which is a third of a network create's cost (see sql.py)."""
        return self._retrying(lambda: self._in_connection(work))

    def state_version(self) -> int:
        """The desired-state version: it changes when any write of desired state commits."""
        with self.read() as session:
            return int(session.execute(text(_READ_VERSION)).scalar() or 0)

    def _in_session(self, work: Callable[[Session], T], desired_state: bool) -> T:
        with self._queued(), self._writer() as session, session.begin():
            result = work(session)
            if desired_state:
                session.execute(text(_BUMP_VERSION))
            return result

    def _in_connection(self, work: Callable[[Sql], T]) -> T:
        # A pooled driver connection, without SQLAlchemy's Connection and transaction
        # objects around it: they cost as much as the statements (bench/).
        dialect = self._write_engine.dialect
        with self._queued():
            try:
                raw = self._write_engine.raw_connection()
            except dialect.loaded_dbapi.Error as exc:  # down: transient, like a lost link
                raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                          connection_invalidated=True) from exc
            try:
                if self.is_sqlite:
                    raw.cursor().execute("BEGIN IMMEDIATE")
                sql = Sql(raw, postgres=not self.is_sqlite)
                result = work(sql)
                sql.run(_BUMP_VERSION)
                raw.commit()
                return result
            except dialect.loaded_dbapi.Error as exc:
                # Raised as SQLAlchemy's own classes, so _retrying() judges them as usual.
                gone = dialect.is_disconnect(exc, raw, None)
                if gone:
                    raw.invalidate(exc)
                else:
                    raw.rollback()
                raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                          connection_invalidated=gone) from exc
            except BaseException:
                raw.rollback()
                raise
            finally:
                raw.close()  # back to the pool

    def _retrying(self, attempt_once: Callable[[], T]) -> T:
        """Run `work` in one transaction; retry it whole when a concurrent writer won.

        `work` must be safe to re-run: it reads the state it builds on inside the
        transaction. A unique-constraint race (two replays of one event at once) is a
        retry too: the second attempt sees the first one's row and becomes a no-op.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return attempt_once()
            except IntegrityError as exc:
                if not _is_race(exc):
                    raise  # a bug, not a race: let it surface
                if attempt == WRITE_ATTEMPTS:
                    raise Conflict("concurrent change to one object; replay the request") from exc
                log.debug("write attempt %d hit a constraint race: %s", attempt, exc.orig)
            except OperationalError as exc:
                if not _is_transient(exc) or attempt == WRITE_ATTEMPTS:
                    raise Unavailable(f"database error: {_first_line(exc.orig)}") from exc
                log.debug("write attempt %d was transient: %s", attempt, exc.orig)
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # jittered backoff
        raise AssertionError("unreachable")

    def _queued(self) -> AbstractContextManager[None]:
        return self._writer_queue.hold() if self._writer_queue else nullcontext()

    def dispose(self) -> None:
        self._write_engine.dispose()
        self._read_engine.dispose()


class _WriterQueue:
    """Lines SQLite writers up in the kernel instead of in SQLite's busy handler.

    SQLite allows one writer; the others poll with sleeps of 1 to 100 ms, which is what a
    p99 latency would show. A blocking flock wakes the next writer the moment the lock is
    free. The thread lock covers threads of one process (flock is per open file).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        # Opened lazily and again after a fork: gunicorn forks workers after the app
        # is built, and a shared open file would be one lock for all of them.
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise Unavailable(f"database error: cannot open {self._path}: "
                                  f"{exc.strerror}") from exc
            self._pid = os.getpid()
        return self._fd


def _sqlite_engine(url: str, begin_statement: str, echo: bool) -> Engine:
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: no fsync per commit; a power cut may lose the last commits but
        # never corrupts the database.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # SQLite's default cache is 2 MB a connection; past ~20,000 networks the tables
        # outgrow it and every statement goes to the OS for pages (bench/ showed creates
        # dropping by a third). 64 MB and memory-mapped reads keep them in reach.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA mmap_size=268435456")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin_statement)

    return engine


def _is_race(exc: IntegrityError) -> bool:
    """A constraint another transaction made us break: two replays of one event at once
    (unique), or a parent deleted under us (foreign key; only PostgreSQL, as SQLite
    writers take turns). A retry sees the winner's state and answers from it."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in ("23505", "23503") or "UNIQUE constraint failed" in str(exc.orig)


def _is_transient(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:  # the server went away; the pool has dropped it
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _PG_RETRY_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else "unknown"
