"""Every Redis key jobengine writes, in one place. RQ's own keys (rq:*) are RQ's business."""

from __future__ import annotations

PREFIX = "jobengine"

#: Stream of job events waiting to be written to PostgreSQL (see jobengine.history).
EVENTS_STREAM = f"{PREFIX}:events"
#: Consumer group of the history writers on EVENTS_STREAM.
HISTORY_GROUP = "history"


def job_meta_key(job_id: str) -> str:
    """Not used by RQ: reserved for per-job engine data that must outlive RQ's job hash."""
    return f"{PREFIX}:job:{job_id}"
