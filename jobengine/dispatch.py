"""Dispatch: validate, then write the `jobs` row and put the job on its lane's RQ queue.

Nothing is written until the priority, the function and the arguments all check out. The
PostgreSQL row is written first (one round trip for any number of jobs), then the jobs go to
Redis in one pipeline; if Redis refuses, the rows are deleted again, so a failed dispatch
leaves nothing behind. If PostgreSQL is down, dispatch still succeeds: the row travels as a
`queued`/`scheduled` event in the history stream and is written when PostgreSQL is back.
"""

from __future__ import annotations

import importlib
import pickle
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Queue
from rq.job import Job

from jobengine.config import Settings
from jobengine.errors import JobFunctionError, SerializationError, StoreUnavailable
from jobengine.history import add_event
from jobengine.models import NewJob
from jobengine.store.postgres import PostgresStore
from jobengine.types import EventKind, JobStatus

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80


@dataclass(frozen=True)
class JobSpec:
    """One job to dispatch: function, arguments and options."""

    func: str | Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    type: str | None = None
    priority: str = "normal"
    delay: float | None = None  # overrides the lane's dispatch delay
    job_id: str | None = None


@dataclass(frozen=True)
class _Prepared:
    spec: JobSpec
    func_name: str
    type: str
    queue: str
    delay: float
    record: NewJob


def resolve_function(func: str | Callable[..., Any]) -> str:
    """Return the dotted name RQ stores for `func`, after checking it imports and is callable.

    Accepts "pkg.mod:func", "pkg.mod.func" or a module-level callable.
    """
    if callable(func) and not isinstance(func, str):
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
        if not module or "<" in qualname or module == "__main__":
            raise JobFunctionError(
                f"job function {qualname or func!r} is not importable by name: "
                "define it at module level in an importable module"
            )
        dotted = f"{module}.{qualname}"
    else:
        dotted = str(func).strip().replace(":", ".")
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise JobFunctionError(f"job function {func!r} must be 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobFunctionError(f"job function {func!r} does not import: {exc}") from None
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise JobFunctionError(f"job function {func!r}: {module_name} has no callable {attr!r}")
    return dotted


def check_serialisable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise SerializationError unless RQ's serializer (pickle) can store the arguments."""
    try:
        pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickle raises many types
        raise SerializationError(f"job arguments cannot be serialised: {exc}") from None


def args_repr(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short human-readable rendering of a call's arguments for history and the console."""
    parts = [_repr.repr(a) for a in args] + [f"{k}={_repr.repr(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


class Dispatcher:
    """Turns JobSpecs into RQ jobs on their lanes plus `jobs` rows."""

    def __init__(self, settings: Settings, connection: redis.Redis, store: PostgresStore) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection,
                                       default_timeout=self.settings.job_timeout)
        return self._queues[name]

    def _prepare(self, spec: JobSpec, now: datetime) -> _Prepared:
        lane = self.settings.lane(spec.priority)
        func_name = resolve_function(spec.func)
        check_serialisable(spec.args, spec.kwargs)
        delay = lane.delay if spec.delay is None else max(0.0, float(spec.delay))
        job_type = spec.type or func_name.rpartition(".")[2]
        record = NewJob(
            id="",  # RQ assigns the id when the job is made
            type=job_type,
            queue=lane.queue,
            priority=lane.priority,
            status=JobStatus.SCHEDULED if delay > 0 else JobStatus.QUEUED,
            func=func_name,
            args=args_repr(spec.args, spec.kwargs),
            created_at=now,
            scheduled_for=now + timedelta(seconds=delay) if delay > 0 else None,
        )
        return _Prepared(spec, func_name, job_type, lane.queue, delay, record)

    def dispatch_many(self, specs: Sequence[JobSpec]) -> list[str]:
        """Validate every spec, then write rows and enqueue; all or nothing."""
        if not specs:
            return []
        now = datetime.now(UTC)
        prepared = [self._prepare(spec, now) for spec in specs]
        jobs = [self._make_job(p) for p in prepared]
        prepared = [
            _Prepared(p.spec, p.func_name, p.type, p.queue, p.delay, replace(p.record, id=job.id))
            for p, job in zip(prepared, jobs, strict=True)
        ]
        rows_written = True
        try:
            self.store.insert_jobs([p.record for p in prepared])
        except StoreUnavailable:
            rows_written = False  # the events below carry the rows to PostgreSQL later
        try:
            self._enqueue(prepared, jobs, with_events=not rows_written)
        except redis.RedisError:
            if rows_written:  # leave nothing half written
                self.store.delete_jobs([job.id for job in jobs])
            raise
        return [job.id for job in jobs]

    def _make_job(self, p: _Prepared) -> Job:
        queue = self.queue(p.queue)
        return queue.create_job(
            p.func_name,
            args=p.spec.args,
            kwargs=p.spec.kwargs,
            job_id=p.spec.job_id,
            timeout=self.settings.job_timeout,
            result_ttl=self.settings.result_ttl,
            failure_ttl=self.settings.failure_ttl,
            meta={"type": p.type, "priority": p.record.priority.value},
            status=JobStatus.SCHEDULED if p.delay > 0 else JobStatus.QUEUED,  # type: ignore[arg-type]
        )

    def _enqueue(self, prepared: list[_Prepared], jobs: list[Job], with_events: bool) -> None:
        with self.connection.pipeline() as pipe:
            for p, job in zip(prepared, jobs, strict=True):
                queue = self.queue(p.queue)
                if p.delay > 0:
                    queue.schedule_job(job, p.record.scheduled_for, pipeline=pipe)
                else:
                    queue.enqueue_job(job, pipeline=pipe)
                if with_events:
                    kind = EventKind.SCHEDULED if p.delay > 0 else EventKind.QUEUED
                    add_event(pipe, kind, job.id, p.queue, at=p.record.created_at, type=p.type,
                              priority=p.record.priority, func=p.func_name, args=p.record.args,
                              delay=p.delay or None)
            pipe.execute()
