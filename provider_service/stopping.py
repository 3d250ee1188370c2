"""The worker's stop, as long-polls see it.

gunicorn stops a worker gracefully on SIGTERM: it waits for the requests it is serving.
An agent's long-poll (GET /devices/<name>/config?wait=) would hold that stop for up to
its whole wait. When the worker is told to stop, every waiting long-poll answers at once
instead, with no change, as if its wait had run out; the agent polls again elsewhere or
later.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOPPING = threading.Event()


def answer_long_polls_on_stop(worker: Any) -> None:
    """gunicorn's post_worker_init hook: chain our flag before the worker's own SIGTERM
    handler (handle_exit), which gunicorn installed just before."""
    handle_exit = worker.handle_exit

    def exiting(signum: int, frame: FrameType | None) -> None:
        STOPPING.set()
        handle_exit(signum, frame)

    signal.signal(signal.SIGTERM, exiting)
