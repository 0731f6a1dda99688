"""Enumerations shared by the engine and the console."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    """A dispatch lane. The order of members is the order workers take them in."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Numeric rank stored in PostgreSQL: higher sorts first (critical=3 ... low=0)."""
        return {"critical": 3, "high": 2, "normal": 1, "low": 0}[self.value]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return {3: cls.CRITICAL, 2: cls.HIGH, 1: cls.NORMAL, 0: cls.LOW}[rank]


class JobStatus(StrEnum):
    """A job's status as PostgreSQL history records it (a running job is `processing`)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    STOPPED = "stopped"

    @property
    def in_flight(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.PROCESSING)


class EventKind(StrEnum):
    """What happened to a job; each kind maps to the status the job has afterwards."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    STARTED = "started"
    FINISHED = "finished"
    RETRY = "retry"
    FAILED = "failed"
    DEFERRED = "deferred"
    CANCELED = "canceled"
    STOPPED = "stopped"
    REQUEUED = "requeued"

    @property
    def status(self) -> JobStatus:
        return _EVENT_STATUS[self]


_EVENT_STATUS = {
    EventKind.QUEUED: JobStatus.QUEUED,
    EventKind.SCHEDULED: JobStatus.SCHEDULED,
    EventKind.STARTED: JobStatus.PROCESSING,
    EventKind.FINISHED: JobStatus.FINISHED,
    EventKind.RETRY: JobStatus.SCHEDULED,
    EventKind.FAILED: JobStatus.FAILED,
    EventKind.DEFERRED: JobStatus.SCHEDULED,
    EventKind.CANCELED: JobStatus.CANCELED,
    EventKind.STOPPED: JobStatus.STOPPED,
    EventKind.REQUEUED: JobStatus.QUEUED,
}
