"""The facade: one object that dispatches, steers and reads the engine.

    engine = Engine.from_settings()            # embedded servers when no URL is configured
    job_id = engine.dispatch("app.tasks:send_email", "a@b.c", type="email", priority="high")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import redis

from jobengine.config import Settings
from jobengine.dispatch import Dispatcher, JobSpec
from jobengine.errors import JobNotFound, RedisUnavailable
from jobengine.history import HistoryWriter
from jobengine.models import FailedJob, FailureGroup, HealthReport, JobDetail, JobRecord, Snapshot
from jobengine.monitor import Monitor
from jobengine.operations import Operations
from jobengine.retry import RetryPolicy
from jobengine.store.postgres import PostgresStore

log = logging.getLogger("jobengine")


class Engine:
    """Dispatch, retry, cancel, snapshot and health over one Redis and one PostgreSQL."""

    def __init__(self, settings: Settings, *, embedded: Any = None, migrate: bool = True) -> None:
        if not settings.redis_url or not settings.database_url:
            raise ValueError("Engine needs redis_url and database_url; use Engine.from_settings()")
        self.settings = settings
        self.embedded = embedded
        self.connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3,
                                               socket_timeout=10, health_check_interval=30)
        self.store = PostgresStore(settings.database_url)
        self.policy = RetryPolicy.from_settings(settings)
        self.dispatcher = Dispatcher(settings, self.connection, self.store)
        self.operations = Operations(self.connection, self.store, read_only=settings.read_only)
        self.monitor = Monitor(settings, self.connection, self.store)
        self._writer: HistoryWriter | None = None
        if migrate:
            self.store.migrate()

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
    def dispatch(self, func: str | Callable[..., Any], *args: Any, type: str | None = None,
                 priority: str = "normal", **kwargs: Any) -> str:
        """Validate and dispatch one job onto its priority lane; returns the RQ job id."""
        spec = JobSpec(func, tuple(args), dict(kwargs), type=type, priority=priority)
        return self._redis_call(lambda: self.dispatcher.dispatch_many([spec])[0])

    def dispatch_many(self, specs: Iterable[JobSpec]) -> list[str]:
        """Dispatch many jobs: one PostgreSQL round trip and one Redis pipeline for all."""
        batch = list(specs)
        return self._redis_call(lambda: self.dispatcher.dispatch_many(batch))

    # ---- operations ----------------------------------------------------------------------
    def retry(self, job_id: str) -> bool:
        return self._redis_call(lambda: self.operations.retry(job_id))

    def cancel(self, job_id: str) -> bool:
        return self._redis_call(lambda: self.operations.cancel(job_id))

    def retry_group(self, fingerprint: str) -> int:
        ids = self.store.failed_job_ids_in_group(fingerprint)
        return sum(1 for job_id in ids if self._retry_quietly(job_id))

    def _retry_quietly(self, job_id: str) -> bool:
        try:
            return self.retry(job_id)
        except JobNotFound:
            return False

    # ---- reads ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self.monitor.snapshot()

    def health(self) -> HealthReport:
        return self.monitor.health()

    def failed_jobs(self, limit: int = 50, before: tuple[datetime, int] | None = None,
                    search: str | None = None) -> list[FailedJob]:
        return self.store.failed_jobs(limit=limit, before=before, search=search)

    def failure_groups(self, limit: int = 100, search: str | None = None) -> list[FailureGroup]:
        return self.store.failure_groups(limit=limit, search=search)

    def stuck_jobs(self, limit: int = 100) -> list[JobRecord]:
        return self.store.stuck_jobs(self.settings.stuck_after, limit=limit)

    def job_detail(self, job_id_or_prefix: str) -> JobDetail | None:
        """The job's history row, log and failure, plus the retry strategy that applies."""
        detail = self.store.get_job(job_id_or_prefix)
        if detail is None or detail.failure is None:
            return detail
        strategy = self.policy.strategy_for_name(detail.failure.error_class)
        decision = strategy.decide(max(1, detail.record.attempts))
        return replace(detail, retry_strategy=strategy.name,
                       next_delay=decision.delay if decision.retry else None)

    # ---- workers and history -------------------------------------------------------------
    def history_writer(self) -> HistoryWriter:
        """This engine's writer (one consumer, so a batch that failed is retried by the same one)."""
        if self._writer is None:
            self._writer = HistoryWriter(self.connection, self.store, batch=self.settings.history_batch)
        return self._writer

    def flush_history(self) -> int:
        """Write every buffered event to PostgreSQL now; returns how many were written."""
        return self.history_writer().drain()

    def worker(self, queues: Sequence[str] | None = None, *, fork: bool = False, name: str | None = None):
        """An RQ-compatible worker on `queues` (default: every lane, critical first)."""
        from jobengine.runtime.worker import ForkingJobWorker, JobWorker

        cls = ForkingJobWorker if fork else JobWorker
        worker = cls(list(queues or self.settings.queues), connection=self.connection, name=name,
                     default_result_ttl=self.settings.result_ttl)
        worker.configure(self.settings, self.policy)
        return worker

    def close(self) -> None:
        """Close connections and stop embedded servers this process is the last user of."""
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
        kw = self.connection.connection_pool.connection_kwargs
        return kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
