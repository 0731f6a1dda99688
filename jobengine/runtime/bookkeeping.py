"""What a worker records for one job transition, appended to a pipeline it already sends.

Every worker class calls `record` inside the pipeline (or script) that carries RQ's own
bookkeeping for the job, so history, metrics and cache invalidation cost no extra round trip.
"""

from __future__ import annotations

from typing import Any

from jobengine.cache import invalidate_job_status
from jobengine.history import add_event
from jobengine.metrics import record_metrics
from jobengine.types import EventKind


def record(pipe: Any, kind: EventKind, job_id: str, queue: str, **details: Any) -> None:
    """Append one transition (started, finished, retry, failed, stopped, deferred...): its history
    event, its counters and per-minute buckets, and the deletion of the job's cached status."""
    add_event(pipe, kind, job_id, queue, **details)
    record_metrics(pipe, kind, queue, details)
    invalidate_job_status(pipe, job_id)
