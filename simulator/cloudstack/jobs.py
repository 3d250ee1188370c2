"""Async jobs: one worker thread runs them one at a time, in the order they were submitted.

CloudStack runs jobs concurrently but serialises those on the same network (its job
queues per object); one queue for everything is stricter, which only makes orderings
deterministic. A job's answer is what queryAsyncJobResult and listAsyncJobs show.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator.cloudstack.params import ApiError, internal_error

logger = logging.getLogger(__name__)
Json = dict[str, Any]
Work = Callable[[], Json]  # the job's result object; raises ApiError when the job fails
PENDING, SUCCEEDED, FAILED = 0, 1, 2
STOP_TIMEOUT_S = 10.0


def cloudstack_time(moment: datetime) -> str:
    """A time as the API writes it ("yyyy-MM-dd'T'HH:mm:ssZ")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class Job:
    id: str
    cmd: str
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: int = PENDING
    result_code: int = 0
    result: Json | None = None
    completed: datetime | None = None

    def answer(self) -> Json:
        """The job as queryAsyncJobResult shows it; a pending job has no result yet."""
        answer: Json = {"jobid": self.id, "cmd": self.cmd, "jobstatus": self.status,
                        "jobprocstatus": 0, "jobresultcode": self.result_code,
                        "created": cloudstack_time(self.created)}
        if self.status != PENDING:
            answer |= {"jobresulttype": "object", "jobresult": self.result}
        if self.completed is not None:
            answer["completed"] = cloudstack_time(self.completed)
        return answer


class JobRunner:
    """The job table and the worker. Jobs submitted while the worker is stopped wait."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        # Guards the job table and each job's fields, so that answers are never halfway.
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="cloudstack-jobs",
                                            daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Finish the jobs already queued, then end the worker."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._queue.put(None)
        worker.join(STOP_TIMEOUT_S)
        if worker.is_alive():
            logger.warning("the job worker is still busy after %.0f s; left behind",
                           STOP_TIMEOUT_S)

    def submit(self, job_id: str, cmd: str, work: Work) -> None:
        job = Job(job_id, cmd)
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put((job, work))

    def answer(self, job_id: str) -> Json | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.answer()

    def answers(self) -> list[Json]:
        with self._lock:
            return [job.answer() for job in self._jobs.values()]

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            job, work = item
            self._run(job, work)

    def _run(self, job: Job, work: Work) -> None:
        try:
            result, status, code = work(), SUCCEEDED, 0
        except ApiError as error:
            result, status, code = _failure(error), FAILED, error.code
        except Exception as exc:  # the worker must outlive any job
            logger.exception("job %s (%s) failed", job.id, job.cmd)
            unexpected = internal_error(exc)
            result, status, code = _failure(unexpected), FAILED, unexpected.code
        with self._lock:
            job.result, job.status, job.result_code = result, status, code
            job.completed = datetime.now(UTC)


def _failure(error: ApiError) -> Json:
    return {"errorcode": error.code, "errortext": error.text}
