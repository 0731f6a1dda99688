"""The facade: one object that dispatches, steers and reads the engine.

    engine = Engine.from_settings()            # embedded servers when no URL is configured
    job_id = engine.dispatch("app.tasks:send_email", "a@b.c", type="email", priority="high")
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from jobengine import validate as v
from jobengine.cache import TAG_CONFIG, TAG_JOBS, TAG_SNAPSHOT, TAG_STATS, TaggedCache
from jobengine.config import Settings
from jobengine.connection import redis_from_url, where
from jobengine.dispatch import Dispatcher, JobSpec
from jobengine.errors import ConfigError, RedisUnavailable, StoreUnavailable, ValidationError
from jobengine.history.writer import HistoryWriter
from jobengine.lanes import Lanes
from jobengine.models import (
    LANE_STATES,
    FailedJob,
    FailureGroup,
    HealthReport,
    JobDetail,
    JobRecord,
    LanePage,
    PauseInfo,
    Snapshot,
    WindowStats,
)
from jobengine.monitor import Monitor
from jobengine.operations import Operations
from jobengine.retry import RetryPolicy
from jobengine.store.postgres import PostgresStore

if TYPE_CHECKING:
    from jobengine.alerts.state import AlertRecord
    from jobengine.bulk import BulkResult
    from jobengine.history.deadletters import DeadLetters
    from jobengine.runtime.fastworker import FastWorker
    from jobengine.runtime.worker import ForkingJobWorker, JobWorker

log = logging.getLogger("jobengine")

_RQ_STATUS = {"started": "processing", "deferred": "queued", "rate_limited": "queued"}


class _UnknownJob(Exception):
    """No such job in Redis or PostgreSQL (not cached)."""


class Engine:
    """Dispatch, retry, cancel, snapshot and health over one Redis and one PostgreSQL."""

    def __init__(self, settings: Settings, *, embedded: Any = None, migrate: bool = True) -> None:
        if not settings.redis_url or not settings.database_url:
            raise ConfigError("Engine needs redis_url and database_url; use Engine.from_settings()")
        if not isinstance(settings, Settings):
            raise ConfigError(f"Engine needs a Settings, got {type(settings).__name__}")
        self.settings = settings
        self.embedded = embedded
        self.connection = redis_from_url(settings.redis_url, socket_connect_timeout=3,
                                         socket_timeout=10, health_check_interval=30)
        self.store = PostgresStore(settings.database_url)
        self.policy = RetryPolicy.from_settings(settings)
        self.dispatcher = Dispatcher(settings, self.connection, self.store)
        self.operations = Operations(self.connection, self.store, read_only=settings.read_only,
                                     permissions=settings.permissions)
        self.cache = TaggedCache(self.connection)
        self.monitor = Monitor(settings, self.connection, self.store, self.cache)
        self.lanes = Lanes(self.connection)
        self._writer: HistoryWriter | None = None
        self._limiter: Any = None
        self._watch: Any = None
        self._schema_lock = threading.Lock()
        self._schema_current = not migrate  # migrate=False: the caller vouches for the schema
        if migrate:
            self.ensure_schema()

    def ensure_schema(self) -> bool:
        """Apply the migrations not yet applied (under PostgreSQL's advisory lock: idempotent),
        once per engine; True when done. PostgreSQL down or refusing is logged, not raised, so an
        engine made during an outage still dispatches (rows travel as events) and reads Redis;
        its history writer calls this again before each batch, so the first writer that reaches
        PostgreSQL applies what is missing."""
        if self._schema_current:
            return True
        with self._schema_lock:
            if not self._schema_current:
                try:
                    applied = self.store.migrate()
                except StoreUnavailable as exc:
                    log.warning("migrations not checked now (retried before history is written): %s", exc)
                    return False
                if applied:
                    log.info("applied migration(s): %s", ", ".join(applied))
                self._schema_current = True
        return True

    def _record_epoch(self) -> None:
        """Give Redis its epoch token and PostgreSQL its first record of it, so a later Redis
        reset is detected (jobengine.reconcile). Done when a worker is made: a deployment that
        runs jobs has one, and a command that only reads writes nothing. Best effort: a server
        that is down is reported by the operations that need it."""
        try:
            self.reconciler().ensure_epoch()
        except (redis.RedisError, StoreUnavailable) as exc:
            log.debug("Redis epoch not recorded now: %s", exc)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, migrate: bool = True,
                      **overrides: Any) -> Engine:
        """Load settings (file, env, overrides), start/attach embedded servers if no URL is set."""
        from jobengine.embedded import resolve

        settings = settings or Settings.load(**overrides)
        settings, embedded = resolve(settings)
        try:
            engine = cls(settings, embedded=embedded, migrate=migrate)
        except BaseException:
            if embedded is not None:
                embedded.stop()
            raise
        return engine

    @property
    def read_only(self) -> bool:
        return self.operations.read_only

    # ---- dispatch ------------------------------------------------------------------------
    def dispatch(self, func: str | Callable[..., Any], /, *args: Any, type: str | None = None,
                 priority: str = "normal", **kwargs: Any) -> str:
        """Validate and dispatch one job onto its priority lane; returns the RQ job id.

        `type` and `priority` are dispatch's own; job keyword arguments named func, type or
        priority are refused here: pass them as `dispatch_many([JobSpec(func, kwargs={...})])`."""
        v.reserved_kwargs(kwargs)
        spec = JobSpec(func, tuple(args), dict(kwargs), type=type, priority=priority)
        return self.dispatch_many([spec])[0]

    def dispatch_many(self, specs: Iterable[JobSpec], *, audit: bool = False) -> list[str]:
        """Dispatch many jobs: one PostgreSQL round trip and one Redis pipeline for all; all or
        nothing (one bad spec: a ValidationError and nothing written). `audit=True` (the CLI):
        an audit row per job, plus one for the batch when it has several."""
        self.guard("dispatch")
        if isinstance(specs, str | bytes) or not isinstance(specs, Iterable):
            raise ValidationError(f"dispatch_many: expected JobSpecs, got {v.show(specs)}")
        batch = list(specs)
        ids: list[str] = self._redis_call(lambda: self.dispatcher.dispatch_many(batch))
        if audit and ids:
            self.operations.audit("dispatch", ids)
            if len(ids) > 1:
                self.audit("dispatch_many", f"{len(ids)} job(s)")
        return ids

    # ---- operations (each refused when read-only or not in [permissions] allow; audited) ---
    def guard(self, action: str) -> None:
        """Raise OperationRefused unless operators may `action` (read-only refuses every one)."""
        self.operations.guard(action)

    def audit(self, action: str, detail: str, job_id: str | None = None) -> None:
        """One audit row (a bulk action: what and how many); a PostgreSQL outage only logs it."""
        from jobengine.operations import actor

        user, host = actor()
        try:
            self.store.record_audit(action, job_id, user, host, detail)
        except StoreUnavailable as exc:
            log.warning("audit row for %s (%s) not written: %s", action, detail, exc)

    def retry(self, job_id: str) -> bool:
        self.guard("retry")
        v.job_id(job_id)
        return self._redis_call(lambda: self.operations.retry(job_id))

    def cancel(self, job_id: str) -> bool:
        self.guard("cancel")
        v.job_id(job_id)
        return self._redis_call(lambda: self.operations.cancel(job_id))

    def retry_group(self, fingerprint: str) -> int:
        """Retry every job with an open failure of this fingerprint; returns how many went back.
        Audited as one `retry_group` row (fingerprint and count) plus a `retry` row per job."""
        self.guard("retry")
        v.text(fingerprint, "failure group", max_len=v.MAX_TEXT)
        ids = self.store.failed_job_ids_in_group(fingerprint)
        done = len(self._redis_call(lambda: self.operations.retry_many(ids)))
        self.audit("retry_group", f"group {fingerprint}: {done} of {len(ids)} job(s) retried")
        return done

    def retry_filtered(self, search: str, limit: int | None = None) -> int:
        """Retry every open failure matching the typed search `search` (as the failed list
        filters), at most `limit` (default `[console] bulk_cap`); returns how many went back.
        One `retry_filtered` audit row (the filter and counts). See `bulk`."""
        v.text(search, "search", max_len=v.MAX_TEXT)
        return self.bulk("retry", search, cap=limit).done

    def cancel_filtered(self, search: str, limit: int | None = None) -> int:
        """Cancel (or stop) every queued, scheduled or running job matching `search`, at most
        `limit`; returns how many. One `cancel_filtered` audit row. See `bulk`."""
        v.text(search, "search", max_len=v.MAX_TEXT)
        return self.bulk("cancel", search, cap=limit).done

    def count_filtered(self, kind: str, search: str | None) -> int:
        """How many jobs `bulk(kind, search)` would touch before its cap: open failures (retry)
        or in-flight jobs as history knows them (cancel). One indexed count query."""
        from jobengine.bulk import Bulk, check
        from jobengine.query import parse_query

        query = parse_query(search)
        check(kind, query)
        return Bulk(self.store, self.operations).count(kind, query)  # type: ignore[arg-type]

    def bulk(self, kind: str, search: str | None, *, cap: int | None = None,
             progress: Callable[[int, int], object] | None = None, stop: Callable[[], bool] | None = None,
             dry_run: bool = False) -> BulkResult:
        """Retry or cancel everything the typed search matches (jobengine.query), in batches of
        1,000, at most `cap` jobs (default `[console] bulk_cap`); `progress(done, total)` after
        each batch, `stop()` asked before each. Refused in read-only; audited as ONE row (the
        filter and counts), not per job. `dry_run`: only count (nothing written, no audit)."""
        from jobengine.bulk import Bulk, check
        from jobengine.query import parse_query

        if kind not in ("retry", "cancel"):
            raise ValidationError(f"bulk action: expected retry or cancel, got {v.show(kind)}")
        if not dry_run:
            self.guard(kind)
        query = parse_query(search)
        check(kind, query)
        limit = self.settings.bulk_cap if cap is None else v.integer(cap, "cap", 1, 1_000_000)
        runner = Bulk(self.store, self.operations)
        result: BulkResult = self._redis_call(lambda: runner.run(kind, query, limit, progress=progress,  # type: ignore[arg-type]
                                                                 stop=stop, dry_run=dry_run))
        if not dry_run:
            self.audit(f"{kind}_filtered", result.line())
        return result

    # ---- lanes: pause, pages, run now -------------------------------------------------------
    def pause(self, queue: str, reason: str | None = None) -> bool:
        """Pause `queue` on every worker of every host within a second (jobs stay queued,
        dispatch still enqueues); False if it was paused already. Audited; refused read-only."""
        from jobengine.operations import actor

        self.guard("pause")
        v.queue_name(queue, "queue", self.settings.known_queues)
        reason = v.optional_text(reason, "reason")
        user, host = actor()
        done = self._redis_call(lambda: self.lanes.pause(queue, f"{user}@{host}", (reason or "").strip() or None))
        self._redis_call(lambda: self.cache.flush_tag(TAG_SNAPSHOT))
        self.audit("pause", f"queue {queue}" + (f": {reason.strip()}" if reason and reason.strip() else "")
                   + ("" if done else " (was paused already)"))
        return done

    def resume(self, queue: str) -> bool:
        """Resume a paused queue (workers take from it again within a second); False if it was
        not paused. Audited; refused read-only."""
        self.guard("resume")
        v.queue_name(queue, "queue", self.settings.known_queues)
        done = self._redis_call(lambda: self.lanes.resume(queue))
        self._redis_call(lambda: self.cache.flush_tag(TAG_SNAPSHOT))
        self.audit("resume", f"queue {queue}" + ("" if done else " (was not paused)"))
        return done

    def paused_queues(self) -> dict[str, PauseInfo]:
        """The paused queues: who paused them, since when, why."""
        return self._redis_call(self.lanes.paused)

    def lane_page(self, queue: str, state: str = "queued", after: tuple[float, str] | None = None,
                  limit: int = 50) -> LanePage:
        """One keyset page of `queue`'s jobs in `state` (queued head first, scheduled soonest due
        first, running, then finished / failed / canceled newest first), with their type and
        arguments from history (one query); pass the page's `after` for the next page."""
        from jobengine.lanes import with_history

        v.queue_name(queue, "queue")
        if state not in LANE_STATES:
            raise ValidationError(f"state: expected one of {', '.join(LANE_STATES)}, got {v.show(state)}")
        v.integer(limit, "limit", 1, 1000)
        if after is not None and not (isinstance(after, tuple) and len(after) == 2
                                      and isinstance(after[0], int | float) and isinstance(after[1], str)):
            raise ValidationError(f"after: expected (score, member), got {v.show(after)}")
        raw = self._redis_call(lambda: self.lanes.page(queue, state, after, limit))
        try:
            records = self.store.get_jobs([j.id for j in raw.jobs]) if raw.jobs else []
        except StoreUnavailable as exc:
            log.debug("lane page without history rows: %s", exc)
            records = []
        return with_history(queue, state, raw, records)

    def run_now(self, job_id: str) -> bool:
        """Move a scheduled job to the front of its queue now; False if it is not scheduled.
        Audited (`run_now`), recorded in the job's log; refused read-only."""
        from jobengine.cache import invalidate_job_status
        from jobengine.history.events import add_event
        from jobengine.operations import actor
        from jobengine.types import EventKind

        self.guard("run_now")
        v.job_id(job_id)
        queue = self._redis_call(lambda: self.lanes.run_now(job_id))
        if queue is None:
            return False
        user, host = actor()
        with self.connection.pipeline(transaction=False) as pipe:
            add_event(pipe, EventKind.QUEUED, job_id, queue, at=datetime.now(UTC), message=f"run now by {user}@{host}")
            invalidate_job_status(pipe, job_id)
            pipe.execute()
        self._redis_call(lambda: self.cache.flush_tag(TAG_SNAPSHOT))
        self.operations.audit("run_now", [job_id])
        return True

    # ---- reads ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self.monitor.snapshot()

    def health(self) -> HealthReport:
        return self.monitor.health()

    def throughput(self, window: str = "1h") -> WindowStats:
        """The throughput chart and p50/p95 run time per job type over `window` ("1h", "6h",
        "24h", "7d"): Redis time buckets, one round trip; shared by every reader for a refresh."""
        from jobengine.metrics import WINDOWS

        if window not in WINDOWS:
            raise ValidationError(f"window: expected one of {', '.join(WINDOWS)}, got {v.show(window)}")
        return self._redis_call(lambda: self.cache.shared(
            f"window:v1:{window}", max(0.1, self.settings.refresh), lambda: self.monitor.window_stats(window),
            tags=[TAG_SNAPSHOT]))

    def failed_jobs(self, limit: int = 50, before: tuple[datetime, int] | None = None,
                    search: str | None = None) -> list[FailedJob]:
        v.integer(limit, "limit", 1, 100_000)
        v.optional_text(search, "search")
        if before is not None and not (isinstance(before, tuple) and len(before) == 2
                                       and isinstance(before[0], datetime) and isinstance(before[1], int)):
            raise ValidationError(f"before: expected (failed_at datetime, id int), got {v.show(before)}")
        return self.store.failed_jobs(limit=limit, before=before, search=search)

    def failure_groups(self, limit: int = 100, search: str | None = None) -> list[FailureGroup]:
        v.integer(limit, "limit", 1, 100_000)
        v.optional_text(search, "search")
        return self.store.failure_groups(limit=limit, search=search)

    def stuck_jobs(self, limit: int = 100) -> list[JobRecord]:
        v.integer(limit, "limit", 1, 100_000)
        return self.store.stuck_jobs(self.settings.stuck_after, limit=limit)

    def job_detail(self, job_id_or_prefix: str, max_text: int | None = None) -> JobDetail | None:
        """The job's history row, log and failure, plus the retry strategy that applies.

        `max_text`: the arguments, error message and traceback cut to that many characters each
        (a marker at the cut; `detail.truncated` names the fields cut, `job_text` has the rest)."""
        v.text(job_id_or_prefix, "job id", max_len=v.MAX_JOB_ID, empty=True)
        if max_text is not None:
            v.integer(max_text, "max_text", 1, 2**31)
        detail = self.store.get_job(job_id_or_prefix)
        if detail is None:
            return None
        if max_text is not None:
            detail = bounded(detail, max_text)
        rq_status = self._cached_status(detail.record.id).get("rq")
        if rq_status == "scheduled":
            detail = replace(detail, due_at=self._due_at(detail.record.id, detail.record.queue))
        if detail.failure is None:
            return replace(detail, rq_status=rq_status)
        strategy = self.policy.strategy_for_name(detail.failure.error_class)
        decision = strategy.decide(max(1, detail.record.attempts))
        return replace(detail, retry_strategy=strategy.name, rq_status=rq_status,
                       next_delay=decision.delay if decision.retry else None)

    def _due_at(self, job_id: str, queue: str) -> datetime | None:
        from jobengine.keys import rq_scheduled_key

        try:
            score = self.connection.zscore(rq_scheduled_key(queue), job_id)
        except redis.RedisError:
            return None
        return None if score is None else datetime.fromtimestamp(float(score), UTC)

    def job_text(self, job_id: str, field: str) -> str | None:
        """The whole text of one field of a job's detail ("args", "error_message" or "traceback");
        None when the job (or its failure) is unknown."""
        v.job_id(job_id)
        if field not in TEXT_FIELDS:
            raise ValidationError(f"field: expected one of {', '.join(TEXT_FIELDS)}, got {v.show(field)}")
        detail = self.store.get_job(job_id)
        if detail is None or detail.record.id != job_id:
            return None
        if field == "args":
            return detail.record.args
        return None if detail.failure is None else getattr(detail.failure, field)

    def audit_entries(self, since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit rows newest first (at, action, job_id, os_user, host, detail), since `since`."""
        v.integer(limit, "limit", 1, 100_000)
        if since is not None and not isinstance(since, datetime):
            raise ValidationError(f"since: expected a datetime, got {v.show(since)}")
        return self.store.audit_entries(limit=limit, since=since)

    def audit_for_job(self, job_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The audit rows naming this job, oldest first (for the job's detail)."""
        v.job_id(job_id)
        v.integer(limit, "limit", 1, 100_000)
        return self.store.audit_for_job(job_id, limit=limit)

    # ---- operations layer: status cache, rate limits, stats, metrics, pruning ------------
    def job_status(self, job_id: str) -> str | None:
        """The job's status (JobStatus value), cached `cache.job_status` seconds and deleted on
        every transition; None for an unknown job."""
        v.job_id(job_id)
        return self._cached_status(job_id).get("status")

    def _cached_status(self, job_id: str) -> dict[str, str | None]:
        from jobengine.keys import job_status_cache_name, rq_job_key

        def compute() -> dict[str, str | None]:
            raw = self.connection.hget(rq_job_key(job_id), "status")
            rq_status = raw.decode() if isinstance(raw, bytes) else raw
            if rq_status is not None:
                return {"status": _RQ_STATUS.get(rq_status, rq_status), "rq": rq_status}
            recorded = self.store.job_status(job_id)  # RQ's hash expired: the history knows
            if recorded is None:
                raise _UnknownJob  # unknown ids are not cached
            return {"status": recorded.value, "rq": None}

        try:
            return self.cache.remember(job_status_cache_name(job_id), self.settings.cache_job_status, compute,
                                       tags=[TAG_JOBS])
        except _UnknownJob:
            return {"status": None, "rq": None}
        except (redis.RedisError, StoreUnavailable):
            return {}

    @property
    def limiter(self) -> Any:
        """The rate-limit gate (jobengine.ratelimit.RateLimiter) workers of this engine share."""
        if self._limiter is None:
            from jobengine.ratelimit import RateLimiter

            self._limiter = RateLimiter.from_settings(self.connection, self.settings)
        return self._limiter

    def set_limit(self, queue: str, per_minute: int | None) -> None:
        """Override a queue's jobs-per-minute limit at run time (None: unlimited); audited."""
        self.guard("limit")
        v.queue_name(queue, "queue", self.settings.known_queues)
        if per_minute is not None:
            v.integer(per_minute, "limit", 0, v.MAX_COUNT)
        self._redis_call(lambda: self.limiter.set_limit(queue, per_minute))
        self._limit_changed(queue, "off" if per_minute is None else str(per_minute))

    def reset_limit(self, queue: str) -> bool:
        """Drop a run-time override: the configured limit applies again; audited."""
        self.guard("limit")
        v.queue_name(queue, "queue", self.settings.known_queues)
        dropped = self._redis_call(lambda: self.limiter.reset_limit(queue))
        self._limit_changed(queue, "config")
        return dropped

    def _limit_changed(self, queue: str, value: str) -> None:
        from jobengine.operations import actor

        self._redis_call(lambda: self.cache.flush_tag(TAG_CONFIG))
        user, host = actor()
        try:
            self.store.record_audit("limit", None, user, host, f"{queue}={value}")
        except StoreUnavailable as exc:  # the change is made (Redis); only its audit line is missing
            log.warning("audit row for limit %s=%s not written: %s", queue, value, exc)

    def limits(self) -> list[Any]:
        """Every lane's limits (configured, override, effective): jobengine.ratelimit.QueueLimit,
        cached `cache.config` seconds, flushed by set_limit/reset_limit."""
        configured = ",".join(f"{q}={n}" for q, n in sorted(self.settings.limits.items()))
        name = f"config:limits:{zlib.crc32(f'{self.settings.queues}|{configured}'.encode()):08x}"  # per config
        return self._redis_call(lambda: self.cache.remember(
            name, self.settings.cache_config, lambda: self.limiter.table.describe(self.settings.queues),
            tags=[TAG_CONFIG]))

    def stats(self, *, fresh: bool = False) -> dict[str, Any]:
        """Whole-history counts by status and type, cached `cache.stats` seconds (tag "stats")."""
        def compute() -> dict[str, Any]:
            rows = self.store.stats_by_status_type()
            by_status: dict[str, int] = {}
            by_type: dict[str, dict[str, int]] = {}
            for status, job_type, n in rows:
                by_status[status] = by_status.get(status, 0) + n
                by_type.setdefault(job_type, {})[status] = n
            return {"computed_at": datetime.now(UTC).isoformat(timespec="seconds"), "total": sum(by_status.values()),
                    "by_status": by_status, "by_type": by_type, "failed_rows": self.store.failed_total()}

        if fresh:
            self.cache.flush_tag(TAG_STATS)
        return self.cache.remember("stats:history", self.settings.cache_stats, compute, tags=[TAG_STATS])

    def metrics_text(self) -> str:
        """The Prometheus exposition of the deployment (what `jobtui metrics` serves)."""
        from jobengine.exporter import exposition

        return self._redis_call(lambda: exposition(self.connection, self.settings))

    def pruner(self) -> Any:
        """A jobengine.prune.Pruner on this engine's servers."""
        from jobengine.prune import Pruner

        return Pruner(self.connection, self.store, self.settings, guard=self.guard, audit=self.audit)

    def reconciler(self, **options: Any) -> Any:
        """A jobengine.reconcile.Reconciler on this engine's servers (options: page_size, grace)."""
        from jobengine.reconcile import Reconciler

        return Reconciler(self.connection, self.store, self.settings, guard=self.guard, **options)

    def alerter(self) -> Any:
        """A jobengine.alerts.Alerter on this engine's servers (`run_once`, `send_test`)."""
        from jobengine.alerts import Alerter

        return Alerter(self.connection, self.store, self.settings, monitor=self.monitor)

    def recent_alerts(self, limit: int = 20) -> list[AlertRecord]:
        """The last alert notices sent (jobengine.alerts.AlertRecord), newest first: one Redis read."""
        from jobengine.alerts.state import recent

        v.integer(limit, "limit", 1, 1000)
        return self._redis_call(lambda: recent(self.connection, limit))

    # ---- workers and history -------------------------------------------------------------
    def history_writer(self) -> HistoryWriter:
        """This engine's writer (one consumer, so a batch that failed is retried by the same one)."""
        if self._writer is None:
            self._writer = HistoryWriter(self.connection, self.store, batch=self.settings.history_batch,
                                         prepare=self.ensure_schema)
        return self._writer

    def flush_history(self) -> int:
        """Write every buffered event to PostgreSQL now; returns how many were written."""
        return self.history_writer().drain()

    def dead_letters(self) -> DeadLetters:
        """Retry or drop the events PostgreSQL refused (refused when read-only; audited)."""
        from jobengine.history.deadletters import DeadLetters

        return DeadLetters(self.connection, self.store, guard=self.guard, audit=self.audit)

    def worker(self, queues: Sequence[str] | None = None, *, fork: bool = False, classic: bool = False,
               name: str | None = None) -> FastWorker | JobWorker | ForkingJobWorker:
        """An RQ-compatible worker on `queues` (default: every lane, critical first).

        `FastWorker` by default (in-process, batched bookkeeping: fastest); `fork=True`: a
        `ForkingJobWorker` (a work horse per job: isolation); `classic=True`: a `JobWorker`
        (RQ's SimpleWorker with our hooks)."""
        from jobengine.runtime.fastworker import FastWorker
        from jobengine.runtime.worker import ForkingJobWorker, JobWorker

        self.policy.validate()  # a worker refuses to start on a retry mapping that does not import
        if queues is not None:
            if isinstance(queues, str) or not queues:
                raise ValidationError(f"queues: expected a non-empty list of queue names, got {v.show(queues)}")
            for q in queues:
                v.queue_name(q, "queues", self.settings.known_queues)
        self._record_epoch()
        self.watch_long_running()
        cls = ForkingJobWorker if fork else JobWorker if classic else FastWorker
        worker = cls(list(queues or self.settings.queues), connection=self.connection, name=name,
                     default_result_ttl=self.settings.result_ttl)
        worker.configure(self.settings, self.policy, self.limiter)
        return worker

    def watch_long_running(self) -> Any:
        """Start (once per engine) the thread warning about jobs past `thresholds.long_running`
        while they run (jobengine.running.LongRunningWatch); done when a worker is made."""
        if self._watch is None:
            from jobengine.running import LongRunningWatch, watch_interval

            self._watch = LongRunningWatch(self.connection, self.monitor.check_long_running,
                                           watch_interval(self.settings.long_running)).start()
        return self._watch

    def close(self) -> None:
        """Close connections and stop embedded servers this process is the last user of."""
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._writer is not None:
            self._writer.stop(flush=False)
        self.store.close()
        self.connection.close()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redis_call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.RedisError as exc:
            raise RedisUnavailable(
                f"Redis at {self._redis_where()} is unreachable: {exc}; check the Redis URL and server"
            ) from None

    def _redis_where(self) -> str:
        return where(self.connection)


TEXT_FIELDS = ("args", "error_message", "traceback")


def _cut(value: str | None, limit: int) -> tuple[str | None, bool]:
    if value is None or len(value) <= limit:
        return value, False
    return f"{value[:limit]}\n... [cut: {len(value) - limit:,} more of {len(value):,} characters]", True


def bounded(detail: JobDetail, max_text: int) -> JobDetail:
    """`detail` with its long texts cut to `max_text` characters each and `truncated` naming them."""
    cut: list[str] = []
    args, more = _cut(detail.record.args, max_text)
    if more:
        cut.append("args")
        detail = replace(detail, record=replace(detail.record, args=args))
    if detail.failure is not None:
        changes: dict[str, Any] = {}
        for name in ("error_message", "traceback"):
            text, more = _cut(getattr(detail.failure, name), max_text)
            if more:
                cut.append(name)
                changes[name] = text
        if changes:
            detail = replace(detail, failure=replace(detail.failure, **changes))
    return replace(detail, truncated=tuple(cut))
