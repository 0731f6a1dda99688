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


def log_run(path: str, seconds: float) -> None:
    """Append this job's id to the file `path` (one line per run, kept outside Redis so a Redis
    that loses its data does not forget it), then sleep."""
    job = get_current_job()
    assert job is not None
    with open(path, "a", encoding="utf-8") as runs:  # one short O_APPEND write: lines never interleave
        runs.write(job.id + "\n")
    time.sleep(seconds)
