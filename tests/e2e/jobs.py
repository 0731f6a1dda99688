"""Job functions the end-to-end tests dispatch (importable as tests.e2e.jobs by the worker processes)."""

from __future__ import annotations

import time

from rq import get_current_job


def touch(seconds: float) -> None:
    """Count this run (INCR runs:<id>: the job's own side effect), sleep, then count the end."""
    job = get_current_job()
    assert job is not None
    job.connection.incr(f"runs:{job.id}")
    time.sleep(seconds)
    job.connection.incr("ended")
