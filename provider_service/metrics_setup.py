"""The multiprocess directory of prometheus_client, for the service under gunicorn.

Every worker writes its counters and histograms to files in PROMETHEUS_MULTIPROC_DIR;
a scrape, whichever worker serves it, sums them all (provider_service.metrics says why
not the database). The variable must be set before prometheus_client is first imported
(it picks its value class then), and inherited by the workers: `prepare` runs in the
master before gunicorn forks. The files of a previous run would add their counts to
this one's, so the directory starts empty; a worker that exits is marked dead
(`child_exit`), which drops its live gauges (we have none in files today) while its
counts stay in the sum, as counters must.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# No prometheus_client import here: this module runs before the variable is set.

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIRECTORY_NAME = "metrics"


def prepare(state_dir: Path) -> Path:
    """An empty state_dir/metrics, and PROMETHEUS_MULTIPROC_DIR pointing at it."""
    directory = state_dir / DIRECTORY_NAME
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's child_exit hook (in the master)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
