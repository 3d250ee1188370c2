"""Helpers for PostgreSQL race tests: one transaction in a thread, made to wait on a lock
another transaction holds, then finished. Waits poll pg_stat_activity with a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from provider_service.db import Database
from provider_service.sql import Sql


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # reported by the test, not lost in the thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_blocked(db: Database, thread: threading.Thread) -> None:
    """Until `thread` waits for a lock another transaction holds (or is done: then it did
    not wait, and the test's assertions tell what came of it)."""
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        with db.engine.connect() as connection:  # a new snapshot of pg_stat_activity
            waiting = connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"))
        if waiting:
            return
        time.sleep(0.01)


def finish(thread: threading.Thread, outcome: dict[str, Any]) -> Any:
    thread.join(timeout=30)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def while_held(db: Database, hold: Callable[[Sql], object], contender: Callable[[], Any]) -> Any:
    """Run `hold` in a transaction of its own, start `contender` in a thread, let it run
    into that transaction's locks, commit, and return (or raise) what the contender got."""
    raw = db.engine.raw_connection()
    try:
        hold(Sql(raw, postgres=True))
        thread, outcome = in_thread(contender)
        wait_until_blocked(db, thread)
        raw.commit()
    finally:
        raw.close()
    return finish(thread, outcome)
