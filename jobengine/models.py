"""Immutable values passed between the engine, the store and the console."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from jobengine.types import EventKind, JobStatus, Priority


@dataclass(frozen=True)
class JobEvent:
    """One transition of one job, buffered in Redis and written to PostgreSQL in batches.

    `event_id` is the Redis stream id: unique, so writing a batch twice writes it once.
    """

    event_id: str
    kind: EventKind
    job_id: str
    at: datetime
    queue: str
    type: str | None = None
    priority: Priority | None = None
    attempt: int | None = None
    duration: float | None = None
    delay: float | None = None
    func: str | None = None
    args: str | None = None
    worker: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class NewJob:
    """The `jobs` row written synchronously by dispatch."""

    id: str
    type: str
    queue: str
    priority: Priority
    status: JobStatus
    func: str
    args: str
    created_at: datetime
    scheduled_for: datetime | None = None
    payload: bytes | None = None  # RQ's job `data`: what re-creates the job if Redis loses it
    options: Mapping[str, Any] | None = None  # the job hash's options (see dispatch.rq_job_hash)


@dataclass(frozen=True)
class RestorableJob:
    """What a `jobs` row keeps to re-create its job in Redis (payload None: it cannot)."""

    id: str
    queue: str
    status: JobStatus
    attempts: int
    created_at: datetime
    scheduled_for: datetime | None
    payload: bytes | None
    options: Mapping[str, Any] | None


@dataclass(frozen=True)
class JobRecord:
    """A `jobs` row."""

    id: str
    type: str
    queue: str
    priority: Priority | None
    status: JobStatus
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failed_at: datetime | None = None
    func: str | None = None
    args: str | None = None
    worker: str | None = None
    duration: float | None = None


@dataclass(frozen=True)
class FailedJob:
    """A `failed_jobs` row: one final failure of one job."""

    id: int
    job_id: str
    type: str
    queue: str
    error_class: str
    error_message: str
    traceback: str
    fingerprint: str
    failed_at: datetime
    attempts: int
    retried_at: datetime | None = None
    """When an operator put the job back on its queue after this failure (None: still failed)."""


@dataclass(frozen=True)
class FailureGroup:
    """Failures sharing an exception class and message fingerprint."""

    error_class: str
    fingerprint: str
    sample_message: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class LogEntry:
    """A `job_logs` row."""

    at: datetime
    kind: str
    level: str
    message: str
    attempt: int | None = None
    delay: float | None = None


@dataclass(frozen=True)
class JobDetail:
    """Everything the console's detail pane shows about one job."""

    record: JobRecord
    logs: tuple[LogEntry, ...] = ()
    failure: FailedJob | None = None
    retry_strategy: str | None = None
    next_delay: float | None = None
    rq_status: str | None = None
    truncated: tuple[str, ...] = ()
    """Fields cut by `Engine.job_detail(max_text=...)` ("args", "error_message", "traceback")."""
    due_at: datetime | None = None
    """When a scheduled job is due (its score in its queue's scheduled registry)."""


@dataclass(frozen=True)
class PauseInfo:
    """Why a queue is paused: by whom (OS user@host), since when, and the reason given."""

    by: str
    since: datetime
    reason: str | None = None


@dataclass(frozen=True)
class QueueProbe:
    """One queue's state in Redis, read by `jobengine.monitor.QueueRead` for the snapshot, the
    health check and the Prometheus scrape alike."""

    name: str
    size: int  # jobs waiting (RQ's queue list)
    scheduled: int  # RQ's scheduled registry: delays, retries, rate-limit deferrals
    started: int  # RQ's started registry: jobs running
    failed: int  # RQ's failed registry
    processed: int  # the specification's queue:{queue}:processed counter
    oldest_wait: float | None  # seconds the head job has waited (None: nothing waiting)
    rate_limit: int | None  # effective jobs per minute, the run-time override merged (None: unlimited)
    rate_used: int  # hits in the current 60 s window (counted whether or not a limit applies)
    paused: PauseInfo | None = None  # set by `jobtui pause`: workers skip the queue


@dataclass(frozen=True)
class QueueStats:
    """One lane/queue as the dashboard shows it."""

    name: str
    priority: Priority | None
    size: int
    scheduled: int
    running: int
    failed: int
    oldest_wait: float | None = None
    processed_per_minute: tuple[int, ...] = ()
    failed_per_minute: tuple[int, ...] = ()
    rate_limit: int | None = None
    rate_used: int = 0
    size_threshold: int | None = None
    paused: PauseInfo | None = None

    @property
    def over_threshold(self) -> bool:
        return self.size_threshold is not None and self.size > self.size_threshold


LaneState = Literal["queued", "scheduled", "running", "finished", "failed", "canceled"]
LANE_STATES: tuple[LaneState, ...] = ("queued", "scheduled", "running", "finished", "failed", "canceled")


@dataclass(frozen=True)
class LaneJob:
    """One job of a lane as its Redis list or registry holds it, with its history row's type and
    arguments (None when PostgreSQL has no row: a plain RQ producer's job, or PostgreSQL away)."""

    id: str
    state: LaneState
    score: float | None  # registry score (scheduled: due epoch seconds); list index for queued
    rq_status: str | None = None
    description: str | None = None  # RQ's "func(args)" text
    type: str | None = None
    func: str | None = None
    args: str | None = None
    attempts: int = 0
    created_at: datetime | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None

    @property
    def due_at(self) -> datetime | None:
        """When a scheduled job is due (its score in the scheduled registry)."""
        if self.state != "scheduled" or self.score is None:
            return None
        return datetime.fromtimestamp(self.score, UTC)


@dataclass(frozen=True)
class LanePage:
    """A keyset page of one lane's jobs in one state; `after` asks for the next (None: the last)."""

    queue: str
    state: LaneState
    jobs: tuple[LaneJob, ...]
    total: int
    after: tuple[float, str] | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # every state's size, read in the same trip


@dataclass(frozen=True)
class ThroughputPoint:
    minute: datetime
    processed: int
    failed: int


@dataclass(frozen=True)
class DurationStats:
    """Run times of one job type over a window, from the duration histogram buckets."""

    type: str
    runs: int
    p50: float | None  #: seconds (interpolated in its histogram bucket)
    p95: float | None


@dataclass(frozen=True)
class WindowStats:
    """The throughput chart and the duration percentiles of one time window ("1h", "6h", "24h", "7d")."""

    window: str
    step: int  #: seconds per point
    points: tuple[ThroughputPoint, ...]  #: oldest first; `minute` is each point's start
    durations: tuple[DurationStats, ...] = ()  #: most runs first
    taken_at: datetime | None = None


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    state: str
    current_job: str | None
    queues: tuple[str, ...]
    last_heartbeat: datetime | None
    current_job_type: str | None = None
    current_job_started: datetime | None = None  #: the current run's start
    idle_since: datetime | None = None  #: idle workers: when the last job ended (birth if none ran; None: unknown)


@dataclass(frozen=True)
class RunningJob:
    """A job running now on a registered worker (jobengine.running)."""

    id: str
    type: str
    queue: str
    worker: str
    started_at: datetime


@dataclass(frozen=True)
class StaleWorker:
    """A registered worker whose heartbeat is overdue."""

    name: str
    host: str
    pid: int
    last_heartbeat: datetime | None


Component = Literal["redis", "postgres"]


@dataclass(frozen=True)
class Outage:
    """A server a read could not reach; `message` is the sentence shown (banner, health reasons)."""

    component: Component
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class WorkerLiveness:
    """Worker death as health sees it (`monitor.read_liveness`)."""

    #: fast workers whose alive key expired, not recovered yet: (name, seconds since their last heartbeat)
    dead: tuple[tuple[str, float | None], ...] = ()
    #: alive, but their RQ registration vanished (a Redis reset): they register again at their next heartbeat
    unregistered: tuple[str, ...] = ()


Verdict = Literal["healthy", "warning", "failing", "unknown"]


@dataclass(frozen=True)
class HistoryProgress:
    """The history pipeline as Redis shows it: what waits for PostgreSQL, since when, and the
    dead letters (read by the monitor for the health verdict)."""

    backlog: int = 0  #: events waiting in the stream
    oldest_age: float | None = None  #: seconds since the oldest waiting event was appended
    last_write_age: float | None = None  #: seconds since any history writer last wrote a batch
    dead_letters: int = 0  #: events parked because PostgreSQL refused them as data
    last_error: str | None = None  #: why the last write failed, when it failed after the last success


@dataclass(frozen=True)
class HealthReport:
    verdict: Verdict
    reasons: tuple[str, ...]
    checked_at: datetime
    redis_ok: bool = True
    postgres_ok: bool = True
    failures_last_hour: int = 0
    stuck_jobs: tuple[str, ...] = ()
    workers: int = 0
    history_backlog: int = 0
    history_lag: float | None = None  #: seconds the oldest event has waited for PostgreSQL
    dead_letters: int = 0

    @property
    def exit_code(self) -> int:
        """0 healthy (warnings included), 1 failing, 2 cannot check."""
        return {"healthy": 0, "warning": 0, "failing": 1, "unknown": 2}[self.verdict]


@dataclass(frozen=True)
class Snapshot:
    """Everything one console refresh shows, built in one poll."""

    taken_at: datetime
    queues: tuple[QueueStats, ...]
    throughput: tuple[ThroughputPoint, ...]
    workers: tuple[WorkerInfo, ...]
    health: HealthReport
    failed: tuple[FailedJob, ...] = ()
    failed_total: int = 0
    stuck: tuple[JobRecord, ...] = ()
    outages: tuple[Outage, ...] = field(default=())
    long_running: tuple[RunningJob, ...] = ()
    """Jobs running longer than `thresholds.long_running` now, longest first."""

    @property
    def degraded(self) -> bool:
        return bool(self.outages)


_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|\d+(\.\d+)?|'[^']*'|\"[^\"]*\"")


def failure_fingerprint(error_class: str, message: str) -> str:
    """A short hash grouping failures whose messages differ only in numbers, ids or quoted values."""
    normalised = _VOLATILE.sub("?", message.strip().splitlines()[0] if message.strip() else "")
    return hashlib.sha1(f"{error_class}|{normalised}".encode()).hexdigest()[:12]
