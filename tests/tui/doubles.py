"""A deterministic engine double for the console's snapshot and Pilot tests.

`FakeEngine` implements `jobengine.api.EngineAPI` with fixed data computed from a fixed clock
(`NOW`): four lanes, three workers (four with `dead_worker=True`), a health verdict, ~120
failures in four exception groups, two stuck jobs, a few scheduled/queued jobs, details with
tracebacks and logs; `long_names=True` gives workers 32-character names and some job types
40-odd characters. `retry`, `cancel` and `retry_group` record their calls and change the double's
state; `outage = True` makes `snapshot()` raise `UnavailableError`, `partial_outages` simulates a
partial outage. `alerts` are the notices `recent_alerts` returns (six by default, `ALERTS`;
settable), `alerts_down = True` makes that read raise.
No randomness and no wall clock: the same inputs give the same screens.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

from jobengine.alerts.state import AlertRecord
from jobengine.bulk import BulkResult
from jobengine.engine import bounded
from jobengine.errors import JobNotFound, OperationRefused, UnavailableError
from jobengine.metrics import WINDOWS
from jobengine.models import (
    DurationStats,
    FailedJob,
    FailureGroup,
    HealthReport,
    JobDetail,
    JobRecord,
    LaneJob,
    LanePage,
    LogEntry,
    Outage,
    PauseInfo,
    QueueStats,
    RunningJob,
    Snapshot,
    ThroughputPoint,
    WindowStats,
    WorkerInfo,
    failure_fingerprint,
)
from jobengine.query import parse_query
from jobengine.types import JobStatus, Priority
from tests.tui.alert_data import ALERTS, NOW

MINUTE0 = NOW.replace(second=0) - timedelta(minutes=59)

# name, priority, size, scheduled, base rate per minute, oldest wait, limit, used, threshold
LANES: tuple[tuple[str, Priority, int, int, int, float, int | None, int, int | None], ...] = (
    ("critical", Priority.CRITICAL, 3, 0, 40, 1.2, None, 0, 100),
    ("high", Priority.HIGH, 42, 5, 180, 14.0, 600, 212, 500),
    ("default", Priority.NORMAL, 1843, 120, 900, 312.0, None, 0, 1000),
    ("low", Priority.LOW, 12_400, 3_210, 300, 5_400.0, 60, 60, 20_000),
)
RUNNING = {"critical": 1, "high": 2, "default": 3, "low": 0}

# exception class, message template, job type, retry strategy; chosen by failure index % 12
GROUPS: tuple[tuple[str, str, str, str], ...] = (
    ("jobengine.errors.TemporaryError", "upstream timed out after {n}s", "billing.send_invoice", "exponential"),
    ("jobengine.errors.ResourceError", "lock busy on invoice {n}", "reports.build_daily", "linear"),
    ("ValueError", "invalid literal for int() with base 10: '{n}x'", "sync.pull_orders", "none"),
    ("KeyError", "'customer_id'", "mail.send_welcome", "none"),
)
_GROUP_OF = (0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3)
LONG_WORKERS = {
    "w-api-1": "worker-api-7f3c9a2b1e4d5f60-0001",
    "w-api-2": "worker-api-7f3c9a2b1e4d5f60-0002",
    "w-batch-1": "worker-batch-0c41d2e9b7a35f18-11",
    "w-batch-2": "worker-batch-0c41d2e9b7a35f18-12",
}
"""`long_names=True`: 32-character worker names (hostname-pid-uuid style, as RQ makes them)."""
LONG_TYPES = {
    "billing.send_invoice": "billing.invoices.send_monthly_statement",
    "reports.build_daily": "reports.warehouse.build_daily_revenue_rollup",
    "reports.export_ledger": "reports.finance.export_general_ledger_csv",
    "sync.reindex_catalog": "sync.search.reindex_full_product_catalog",
}
"""`long_names=True`: job types of 39-44 characters."""
_QUEUE_OF = ("default", "default", "high", "default", "low", "default", "critical", "default", "high", "low")


def job_id(n: int) -> str:
    """A stable uuid-shaped job id."""
    h = hashlib.md5(f"job-{n}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _rate(base: int, minute: int, phase: float) -> int:
    wave = math.sin(minute / 6 + phase) * 0.35 * base
    return max(0, int(base + wave + (minute * 7 % 11) * base // 50))


def _traceback(error_class: str, message: str, func: str) -> str:
    short = error_class.rsplit(".", 1)[-1]
    return (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/jobengine/runtime/execute.py", line 88, in run\n'
        "    result = func(*args, **kwargs)\n"
        f'  File "/srv/app/{func.replace(".", "/")}.py", line 42, in {func.rsplit(".", 1)[-1]}\n'
        "    response = client.call(payload, timeout=30)\n"
        '  File "/srv/app/app/clients.py", line 17, in call\n'
        f"    raise {short}(message)\n"
        f"{error_class}: {message}"
    )


class FakeEngine:
    """EngineAPI with fixed data, a fixed clock, recorded calls and switchable outages."""

    def __init__(
        self,
        *,
        failures: int = 120,
        read_only: bool = False,
        snapshot_delay: float = 0.0,
        dead_worker: bool = False,
        long_names: bool = False,
    ) -> None:
        self.read_only = read_only
        self.long_names = long_names
        # dead_worker: also list w-api-2, idle, last heartbeat 3 min ago (SIGKILLed, key not yet expired)
        self.dead_worker = dead_worker
        self.outage = False
        self.partial_outages: tuple[Outage, ...] = ()
        self.snapshot_delay = snapshot_delay
        self.refuse: set[str] = set()
        self.calls: list[tuple[object, ...]] = []
        self.snapshots = 0
        self._lock = threading.Lock()
        self._failures: list[FailedJob] = []
        self._jobs: dict[str, JobRecord] = {}
        self._failure_of: dict[str, FailedJob] = {}
        self.paused: dict[str, PauseInfo] = {}
        self.lane_gone: set[str] = set()  # lane jobs canceled or run now since
        self.lane_ids: dict[str, tuple[str, str, int]] = {}  # lane job id -> (queue, state, index)
        self.bulk_batch = 40
        self.alerts: list[AlertRecord] = list(ALERTS)
        self.alerts_down = False
        self._build(failures)
        if long_names:
            self._lengthen_names()

    # ---- fixture data ---------------------------------------------------------------------
    def _build(self, failures: int) -> None:
        for i in range(failures):
            error_class, template, job_type, _ = GROUPS[_GROUP_OF[i % 12]]
            message = template.format(n=30 + i % 3 if "timed" in template else 1000 + i)
            jid = job_id(i)
            queue = _QUEUE_OF[i % len(_QUEUE_OF)]
            failed_at = NOW - timedelta(seconds=40 + i * 53)
            func = f"app.jobs.{job_type}"
            row = FailedJob(
                id=5000 - i,
                job_id=jid,
                type=job_type,
                queue=queue,
                error_class=error_class,
                error_message=message,
                traceback=_traceback(error_class, message, func),
                fingerprint=failure_fingerprint(error_class, message),
                failed_at=failed_at,
                attempts=1 + i % 5,
            )
            self._failures.append(row)
            self._failure_of[jid] = row
            self._jobs[jid] = JobRecord(
                id=jid,
                type=job_type,
                queue=queue,
                priority=self._priority(queue),
                status=JobStatus.FAILED,
                attempts=row.attempts,
                created_at=failed_at - timedelta(minutes=3 + i % 7),
                started_at=failed_at - timedelta(seconds=2 + i % 9),
                finished_at=failed_at,
                failed_at=failed_at,
                func=func,
                args=f'{{"id": {1000 + i}, "tenant": "acme"}}',
                worker="w-batch-1" if i % 2 else "w-api-1",
                duration=2.0 + i % 9,
            )
        for n, (started, worker) in enumerate(((8100, "w-batch-1"), (13200, "w-batch-2"))):
            jid = job_id(900 + n)
            self._jobs[jid] = JobRecord(
                id=jid,
                type="reports.export_ledger" if n == 0 else "sync.reindex_catalog",
                queue="low" if n == 0 else "default",
                priority=Priority.LOW if n == 0 else Priority.NORMAL,
                status=JobStatus.PROCESSING,
                attempts=1,
                created_at=NOW - timedelta(seconds=started + 300),
                started_at=NOW - timedelta(seconds=started),
                func="app.jobs.reports.export_ledger" if n == 0 else "app.jobs.sync.reindex_catalog",
                args='{"year": 2024}' if n == 0 else '{"full": true}',
                worker=worker,
            )
        for n in range(3):
            jid = job_id(950 + n)
            status = JobStatus.SCHEDULED if n < 2 else JobStatus.QUEUED
            self._jobs[jid] = JobRecord(
                id=jid,
                type="mail.send_digest",
                queue="low",
                priority=Priority.LOW,
                status=status,
                attempts=0,
                created_at=NOW - timedelta(minutes=2 + n),
                func="app.jobs.mail.send_digest",
                args=f'{{"user": {77 + n}}}',
            )

    def _lengthen_names(self) -> None:
        def worker(name: str | None) -> str | None:
            return LONG_WORKERS.get(name, name) if name else name

        self._failures = [replace(r, type=LONG_TYPES.get(r.type, r.type)) for r in self._failures]
        self._failure_of = {r.job_id: r for r in self._failures}
        self._jobs = {
            jid: replace(r, type=LONG_TYPES.get(r.type, r.type), worker=worker(r.worker))
            for jid, r in self._jobs.items()
        }

    @staticmethod
    def _priority(queue: str) -> Priority | None:
        return {lane[0]: lane[1] for lane in LANES}.get(queue)

    @property
    def stuck_ids(self) -> list[str]:
        return [job_id(900), job_id(901)]

    @property
    def scheduled_ids(self) -> list[str]:
        return [job_id(950), job_id(951)]

    def status_of(self, jid: str) -> JobStatus:
        return self._jobs[jid].status

    # ---- EngineAPI: reads -----------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        if self.snapshot_delay:
            time.sleep(self.snapshot_delay)
        with self._lock:
            self.snapshots += 1
            self.calls.append(("snapshot",))
            if self.outage:
                raise UnavailableError("Redis unreachable at 127.0.0.1:6379 (connection refused)")
            failures = list(self._failures)
            stuck = tuple(r for r in self._jobs.values() if r.status is JobStatus.PROCESSING)
        failed_minute: dict[str, list[int]] = {lane[0]: [0] * 60 for lane in LANES}
        for row in failures:
            index = int((row.failed_at - MINUTE0).total_seconds() // 60)
            if 0 <= index < 60:
                failed_minute[row.queue][index] += 1
        queues = []
        for k, (name, priority, size, scheduled, base, wait, limit, used, threshold) in enumerate(LANES):
            queues.append(
                QueueStats(
                    name=name,
                    priority=priority,
                    size=size,
                    scheduled=scheduled,
                    running=RUNNING[name],
                    failed=sum(1 for r in failures if r.queue == name),
                    oldest_wait=wait,
                    processed_per_minute=tuple(_rate(base, m, k * 1.3) for m in range(60)),
                    failed_per_minute=tuple(failed_minute[name]),
                    rate_limit=limit,
                    rate_used=used,
                    size_threshold=threshold,
                    paused=self.paused.get(name),
                )
            )
        workers = self._workers(stuck)
        throughput = tuple(
            ThroughputPoint(
                minute=MINUTE0 + timedelta(minutes=m),
                processed=sum(q.processed_per_minute[m] for q in queues),
                failed=sum(q.failed_per_minute[m] for q in queues),
            )
            for m in range(60)
        )
        return Snapshot(
            taken_at=NOW,
            queues=tuple(queues),
            throughput=throughput,
            workers=workers,
            health=self._health(failures, stuck, queues),
            failed=tuple(failures[:50]),
            failed_total=len(failures),
            stuck=stuck,
            outages=self.partial_outages,
            long_running=self._long_running(workers),
        )

    def _workers(self, stuck: tuple[JobRecord, ...]) -> tuple[WorkerInfo, ...]:
        workers = self._short_workers(stuck)
        if not self.long_names:
            return workers
        return tuple(replace(w, name=LONG_WORKERS.get(w.name, w.name)) for w in workers)

    def _short_workers(self, stuck: tuple[JobRecord, ...]) -> tuple[WorkerInfo, ...]:
        short = {long: name for name, long in LONG_WORKERS.items()}
        current = {short.get(r.worker or "", r.worker): r for r in stuck}

        def worker(name: str, host: str, pid: int, queues: tuple[str, ...], beat: timedelta,
                   idle: timedelta | None) -> WorkerInfo:
            job = current.get(name)
            if job is None:
                return WorkerInfo(name, host, pid, "idle", None, queues, NOW - beat,
                                  idle_since=NOW - idle if idle is not None else None)
            return WorkerInfo(name, host, pid, "busy", job.id, queues, NOW - beat, current_job_type=job.type,
                              current_job_started=job.started_at)

        dead = (
            (worker("w-api-2", "web-02", 4243, ("critical", "high"), timedelta(minutes=3), None),)
            if self.dead_worker else ()
        )
        return (
            worker("w-api-1", "web-01", 4242, ("critical", "high"), timedelta(seconds=1), timedelta(minutes=4)),
            worker("w-batch-1", "batch-02", 1337, ("critical", "high", "default", "low"), timedelta(seconds=4),
                   timedelta(seconds=50)),
            worker("w-batch-2", "batch-02", 1338, ("default", "low"), timedelta(minutes=11), None),
            *dead,
        )

    def _long_running(self, workers: tuple[WorkerInfo, ...]) -> tuple[RunningJob, ...]:
        return tuple(
            RunningJob(w.current_job, w.current_job_type or "?", "default", w.name, w.current_job_started)
            for w in workers if w.current_job and w.current_job_started is not None
        )

    # ---- throughput windows -------------------------------------------------------------------
    def throughput(self, window: str = "1h") -> WindowStats:
        """Fixed series per window (1h: the snapshot's), p50/p95 for five job types."""
        with self._lock:
            self.calls.append(("throughput", window))
            if self.outage:
                raise UnavailableError("Redis unreachable at 127.0.0.1:6379 (connection refused)")
        span, step = WINDOWS[window]
        n = span // step
        last = NOW.replace(second=0, microsecond=0)
        if step >= 300:
            last = last.replace(minute=last.minute - last.minute % (step // 60) if step < 3600 else 0)
        scale = step // 60
        points = tuple(
            ThroughputPoint(
                minute=last - timedelta(seconds=step * (n - 1 - i)),
                processed=sum(_rate(lane[4], i, k * 1.3) for k, lane in enumerate(LANES)) * scale,
                failed=(i * 7 % 5) * scale // 2,
            )
            for i in range(n)
        )
        types = [LONG_TYPES[t] for t in LONG_TYPES] if self.long_names else list(LONG_TYPES)
        durations = tuple(
            DurationStats(t, (5 - k) * 140 * scale, 0.04 * (k + 1) ** 2, 0.9 * (k + 1) ** 2.4)
            for k, t in enumerate([*types, "mail.send_welcome"])
        )
        return WindowStats(window=window, step=step, points=points, durations=durations, taken_at=NOW)

    def _health(
        self, failures: list[FailedJob], stuck: tuple[JobRecord, ...], queues: list[QueueStats]
    ) -> HealthReport:
        last_hour = sum(1 for r in failures if (NOW - r.failed_at).total_seconds() < 3600)
        reasons = []
        if last_hour > 50:
            reasons.append(f"{last_hour} failures in the last hour (threshold 50)")
        reasons += [f"queue {q.name} holds {q.size} jobs (threshold {q.size_threshold})" for q in queues
                    if q.over_threshold]
        if stuck:
            reasons.append(f"{len(stuck)} jobs processing for more than 2 h")
        verdict = "failing" if last_hour > 100 else "warning" if reasons else "healthy"
        return HealthReport(
            verdict=verdict,
            reasons=tuple(reasons),
            checked_at=NOW,
            failures_last_hour=last_hour,
            stuck_jobs=tuple(r.id for r in stuck),
            workers=3,
        )

    def failed_jobs(
        self, limit: int = 50, before: tuple[datetime, int] | None = None, search: str | None = None
    ) -> list[FailedJob]:
        with self._lock:
            self.calls.append(("failed_jobs", limit, before, search))
            rows = [r for r in self._failures if self._matches(r, search)]
        if before is not None:
            rows = [r for r in rows if (r.failed_at, r.id) < before]
        return rows[:limit]

    @staticmethod
    def _matches(row: FailedJob, search: str | None) -> bool:
        """The typed search as the store runs it (type:, queue:, error:, id:, free text)."""
        if not search:
            return True
        q = parse_query(search, NOW)
        if (q.types and row.type not in q.types) or (q.queues and row.queue not in q.queues):
            return False
        if q.error and q.error.lower() not in f"{row.error_class} {row.error_message}".lower():
            return False
        if q.id_prefix and not row.job_id.startswith(q.id_prefix):
            return False
        if q.since and row.failed_at < q.since:
            return False
        needle = (q.text or "").lower()
        return not needle or any(
            needle in value.lower()
            for value in (row.type, row.queue, row.error_class, row.error_message, row.job_id, row.fingerprint)
        )

    def failure_groups(self, limit: int = 100, search: str | None = None) -> list[FailureGroup]:
        with self._lock:
            self.calls.append(("failure_groups", limit, search))
            rows = [r for r in self._failures if self._matches(r, search)]
        groups: dict[str, list[FailedJob]] = {}
        for row in rows:
            groups.setdefault(row.fingerprint, []).append(row)
        out = [
            FailureGroup(
                error_class=members[0].error_class,
                fingerprint=fp,
                sample_message=members[0].error_message,
                count=len(members),
                first_seen=min(m.failed_at for m in members),
                last_seen=max(m.failed_at for m in members),
            )
            for fp, members in groups.items()
        ]
        out.sort(key=lambda g: (-g.count, g.fingerprint))
        return out[:limit]

    def stuck_jobs(self, limit: int = 100) -> list[JobRecord]:
        with self._lock:
            return [r for r in self._jobs.values() if r.status is JobStatus.PROCESSING][:limit]

    def job_detail(self, job_id_or_prefix: str, max_text: int | None = None) -> JobDetail | None:
        detail = self._job_detail(job_id_or_prefix)
        return detail if detail is None or max_text is None else bounded(detail, max_text)

    def _job_detail(self, job_id_or_prefix: str) -> JobDetail | None:
        if job_id_or_prefix in self.lane_ids:
            return self._lane_detail(job_id_or_prefix)
        with self._lock:
            self.calls.append(("job_detail", job_id_or_prefix))
            key = job_id_or_prefix.strip()
            matches = [key] if key in self._jobs else sorted(j for j in self._jobs if key and j.startswith(key))
            if len(matches) > 1:
                raise JobNotFound(f"{key!r} matches {len(matches)} jobs; type more of the id")
            if not matches:
                return None
            record = self._jobs[matches[0]]
            failure = self._failure_of.get(record.id) if record.status is JobStatus.FAILED else None
        return self._detail(record, failure)

    def _lane_detail(self, jid: str) -> JobDetail | None:
        queue, state, index = self.lane_ids[jid]
        job = self.lane_job(queue, state, index)
        status = {"queued": JobStatus.QUEUED, "scheduled": JobStatus.SCHEDULED, "running": JobStatus.PROCESSING,
                  "finished": JobStatus.FINISHED, "canceled": JobStatus.CANCELED}.get(state, JobStatus.QUEUED)
        record = JobRecord(id=jid, type=job.type or "?", queue=queue, priority=self._priority(queue), status=status,
                           attempts=job.attempts, created_at=job.created_at or NOW, started_at=job.started_at,
                           finished_at=job.ended_at, func=job.func, args=job.args, worker=job.worker)
        logs = (LogEntry(record.created_at, "queued", "info", f"queued on {queue}"),)
        return JobDetail(record=record, logs=logs, rq_status=state, due_at=job.due_at)

    def _detail(self, record: JobRecord, failure: FailedJob | None) -> JobDetail:
        logs: list[LogEntry] = [LogEntry(record.created_at, "queued", "info", f"queued on {record.queue}")]
        strategy, delay = None, None
        if failure is not None:
            _, _, _, strategy = next(g for g in GROUPS if g[0] == failure.error_class)
            at = record.started_at or record.created_at
            for attempt in range(1, failure.attempts):
                wait = 2.0 * 2**attempt if strategy == "exponential" else 30.0 * attempt
                logs.append(LogEntry(at, "started", "info", "started on w-batch-1", attempt=attempt))
                logs.append(LogEntry(at, "retry", "warning", failure.error_message, attempt=attempt, delay=wait))
            logs.append(LogEntry(at, "started", "info", "started on w-batch-1", attempt=failure.attempts))
            logs.append(LogEntry(failure.failed_at, "failed", "error", failure.error_message,
                                 attempt=failure.attempts))
            if strategy == "exponential":
                delay = min(2.0 * 2 ** (failure.attempts + 1), 3600.0)
            elif strategy == "linear":
                delay = 30.0 * (failure.attempts + 1)
        elif record.started_at is not None:
            logs.append(LogEntry(record.started_at, "started", "info", f"started on {record.worker}", attempt=1))
        elif record.status is JobStatus.SCHEDULED:
            logs.append(LogEntry(record.created_at, "scheduled", "info", "scheduled in 5 min"))
        if record.status in (JobStatus.CANCELED, JobStatus.STOPPED):
            logs.append(LogEntry(NOW, record.status.value, "warning", f"{record.status.value} from the console"))
        return JobDetail(record=record, logs=tuple(logs), failure=failure, retry_strategy=strategy,
                         next_delay=delay, rq_status=record.status.value)

    def health(self) -> HealthReport:
        return self.snapshot().health

    def recent_alerts(self, limit: int = 20) -> list[AlertRecord]:
        with self._lock:
            self.calls.append(("recent_alerts", limit))
            if self.alerts_down:
                raise UnavailableError("Redis unreachable at 127.0.0.1:6379 (connection refused)")
            return list(self.alerts[:limit])

    # ---- EngineAPI: steering --------------------------------------------------------------
    def _check(self, jid: str) -> None:
        if self.read_only:
            raise OperationRefused("the engine is read-only")
        if jid in self.refuse:
            raise OperationRefused(f"job {jid[:8]} is locked by another operator")

    def retry(self, job_id: str) -> bool:
        with self._lock:
            self.calls.append(("retry", job_id))
            self._check(job_id)
            record = self._jobs.get(job_id)
            if record is None or record.status not in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
                return False
            self._jobs[job_id] = replace(record, status=JobStatus.QUEUED, failed_at=None, finished_at=None)
            self._failures = [r for r in self._failures if r.job_id != job_id]
            return True

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            self.calls.append(("cancel", job_id))
            self._check(job_id)
            if job_id in self.lane_ids:
                self.lane_gone.add(job_id)
                return True
            record = self._jobs.get(job_id)
            if record is None or not record.status.in_flight:
                return False
            status = JobStatus.STOPPED if record.status is JobStatus.PROCESSING else JobStatus.CANCELED
            self._jobs[job_id] = replace(record, status=status, finished_at=NOW)
            return True

    def retry_group(self, fingerprint: str) -> int:
        with self._lock:
            self.calls.append(("retry_group", fingerprint))
            if self.read_only:
                raise OperationRefused("the engine is read-only")
            members = [r for r in self._failures if r.fingerprint == fingerprint]
            self._failures = [r for r in self._failures if r.fingerprint != fingerprint]
            for row in members:
                self._jobs[row.job_id] = replace(self._jobs[row.job_id], status=JobStatus.QUEUED)
            return len(members)

    # ---- EngineAPI: lanes, pause, bulk --------------------------------------------------------
    def pause(self, queue: str, reason: str | None = None) -> bool:
        with self._lock:
            self.calls.append(("pause", queue, reason))
            if self.read_only:
                raise OperationRefused("pause refused: the engine is in read-only mode")
            if queue in self.paused:
                return False
            self.paused[queue] = PauseInfo("ada@web-01", NOW, reason)
            return True

    def resume(self, queue: str) -> bool:
        with self._lock:
            self.calls.append(("resume", queue))
            if self.read_only:
                raise OperationRefused("resume refused: the engine is in read-only mode")
            return self.paused.pop(queue, None) is not None

    def lane_counts(self, queue: str) -> dict[str, int]:
        lane = next(lane for lane in LANES if lane[0] == queue)
        failed = sum(1 for r in self._failures if r.queue == queue)
        return {"queued": lane[2], "scheduled": lane[3], "running": RUNNING[queue], "finished": 30, "failed": failed,
                "canceled": 0}

    def lane_job(self, queue: str, state: str, i: int) -> LaneJob:
        """The i-th job of a lane's state, made up deterministically."""
        k = [lane[0] for lane in LANES].index(queue)
        types = ("mail.send_digest", "billing.send_invoice", "reports.build_daily", "sync.pull_orders")
        job_type = types[(i + k) % len(types)]
        if self.long_names:
            job_type = LONG_TYPES.get(job_type, job_type)
        h = hashlib.md5(f"lane/{queue}/{state}/{i}".encode()).hexdigest()
        jid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        self.lane_ids[jid] = (queue, state, i)
        at = NOW - timedelta(seconds=30 + 47 * i)
        scores = {"queued": float(i), "scheduled": (NOW + timedelta(seconds=90 + 150 * i)).timestamp(),
                  "running": (NOW + timedelta(seconds=60)).timestamp()}
        score = scores.get(state, (NOW - timedelta(seconds=20 * i)).timestamp())
        return LaneJob(
            id=jid, state=state, score=score, rq_status=state, type=job_type, func=f"app.jobs.{job_type}",  # type: ignore[arg-type]
            args=f'{{"user": {1000 + i}, "tenant": "acme"}}', attempts=1 + i % 3, created_at=at,
            enqueued_at=at if state == "queued" else None,
            started_at=NOW - timedelta(seconds=12 + 60 * i) if state == "running" else None,
            ended_at=NOW - timedelta(seconds=20 * i) if state in ("finished", "failed", "canceled") else None,
            worker="w-batch-1" if state == "running" else None)

    def lane_page(self, queue: str, state: str = "queued", after: tuple[float, str] | None = None,
                  limit: int = 50) -> LanePage:
        with self._lock:
            self.calls.append(("lane_page", queue, state, after, limit))
            if self.outage:
                raise UnavailableError("Redis unreachable at 127.0.0.1:6379 (connection refused)")
            counts = self.lane_counts(queue)
            if state == "failed":
                jobs = [LaneJob(id=r.job_id, state="failed", score=r.failed_at.timestamp(), rq_status="failed",
                                type=r.type, args=self._jobs[r.job_id].args, attempts=r.attempts, ended_at=r.failed_at)
                        for r in self._failures if r.queue == queue]
            else:
                jobs = [self.lane_job(queue, state, i) for i in range(min(counts[state], 2000))]
            jobs = [j for j in jobs if j.id not in self.lane_gone]
        start = 0 if after is None else next((n + 1 for n, j in enumerate(jobs) if j.id == after[1]), 0)
        page = jobs[start:start + limit]
        more = start + limit < len(jobs)
        return LanePage(queue=queue, state=state, jobs=tuple(page), total=counts[state],  # type: ignore[arg-type]
                        after=(page[-1].score or 0.0, page[-1].id) if more and page else None, counts=counts)

    def run_now(self, job_id: str) -> bool:
        with self._lock:
            self.calls.append(("run_now", job_id))
            self._check(job_id)
            if job_id in self.lane_gone or self.lane_ids.get(job_id, ("", "", 0))[1] != "scheduled":
                return False
            self.lane_gone.add(job_id)
            return True

    def count_filtered(self, kind: str, search: str | None) -> int:
        with self._lock:
            self.calls.append(("count_filtered", kind, search))
            if kind == "retry":
                return sum(1 for r in self._failures if self._matches(r, search))
            return 42

    def bulk(self, kind: str, search: str | None, *, cap: int | None = None, progress: object = None,
             stop: object = None, dry_run: bool = False) -> BulkResult:
        with self._lock:
            self.calls.append(("bulk", kind, search))
            if self.read_only:
                raise OperationRefused(f"{kind} refused: the engine is in read-only mode")
            matched = [r for r in self._failures if self._matches(r, search)] if kind == "retry" else []
        limit = min(len(matched), cap or 10_000)
        done = 0
        for start in range(0, limit, self.bulk_batch):
            if callable(stop) and stop():
                break
            batch = matched[start:min(limit, start + self.bulk_batch)]
            with self._lock:
                gone = {r.job_id for r in batch}
                self._failures = [r for r in self._failures if r.job_id not in gone]
            done += len(batch)
            if callable(progress):
                progress(done, limit)
        stopped = done < limit
        return BulkResult(kind, parse_query(search, NOW), len(matched), done, done, 0, cap or 10_000,  # type: ignore[arg-type]
                          stopped=stopped)

    # ---- helpers for tests ----------------------------------------------------------------
    def called(self, name: str) -> list[tuple[object, ...]]:
        """The recorded calls of one method, arguments only."""
        return [call[1:] for call in self.calls if call[0] == name]

    @property
    def failures(self) -> list[FailedJob]:
        return list(self._failures)
