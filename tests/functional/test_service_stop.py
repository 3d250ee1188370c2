"""The service under gunicorn stops without waiting out its agents' long-polls."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from bench.service import running_service
from simulator.topology import Topology


def test_a_stopping_service_answers_the_long_polls_it_holds() -> None:
    """On SIGTERM a waiting long-poll answers at once, with nothing new; without that,
    the worker's graceful stop would wait for it and be killed first (MAX_WAIT_S 60 s
    against gunicorn's 30 s), the agent's connection reset."""
    with running_service(workers=1) as service:
        for path, body in Topology.small().inventory():
            service.ok("PUT", path, body)
        generation = service.ok("GET", "/v1/devices/hv1/config")["generation"]
        answers: list[tuple[int, Any]] = []
        poll = threading.Thread(target=lambda: answers.append(service.call(
            "GET", f"/v1/devices/hv1/config?since={generation}&wait=60", timeout=90)))
        poll.start()
        # The long-poll is waiting once the service has seen it: its access is not logged,
        # so wait on the thread a little rather than on the service.
        poll.join(timeout=1)
        assert poll.is_alive(), answers
        os.kill(service.pid, signal.SIGTERM)
        poll.join(timeout=90)
    assert answers == [(200, {"device": "hv1", "generation": generation, "artifacts": {}})]
