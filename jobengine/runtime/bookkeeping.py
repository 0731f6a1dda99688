"""What a worker records for one job transition, appended to a pipeline it already sends.

Every worker class calls `record` inside the pipeline (or script) that carries RQ's own
bookkeeping for the job, so history (and the metrics added to it) costs no extra round trip.
"""

from __future__ import annotations

from typing import Any

from jobengine.history import add_event
from jobengine.types import EventKind


def record(pipe: Any, kind: EventKind, job_id: str, queue: str, **details: Any) -> None:
    """Append the history event of one transition (started, finished, retry, failed, stopped...)."""
    add_event(pipe, kind, job_id, queue, **details)
