"""Dispatch: validate, then write the `jobs` row and put the job on its lane's RQ queue.

Nothing is written until every spec of the batch checks out (`check_specs`: function name and
`[dispatch] allow`, priority, type, delay, id, arguments; then the import and pickling). The
jobs go to Redis first, in one MULTI: the job hashes RQ's `create_job` + `enqueue_job`/
`schedule_job` would write (built here, one HSET each), then one RPUSH per queue and one ZADD per
scheduled registry for the whole batch. Then the PostgreSQL rows are written (one round trip for
any number of jobs) and the call returns: the history row is there when dispatch returns, but a
waiting worker starts the job without waiting for PostgreSQL (pickup latency is Redis's alone).
If Redis refuses, nothing was written anywhere. Should the worker's history reach PostgreSQL
before the dispatch's row, the row fills in what the events left empty (`insert_jobs`). If
PostgreSQL is down, dispatch still succeeds: the row travels as a `queued`/`scheduled` event in
the history stream (a second pipeline) and is written when PostgreSQL is back.

The row also keeps what re-creates the job should Redis lose it (`payload`: RQ's `data`;
`options`: the rest of the job hash), which `jobengine.reconcile` uses; `rq_job_hash` builds
the hash from them, for dispatch and reconcile alike.
"""

from __future__ import annotations

import calendar
import importlib
import logging
import pickle
import reprlib
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Queue
from rq.job import validate_job_id
from rq.registry import ScheduledJobRegistry
from rq.utils import get_call_string, utcformat

from jobengine import validate as v
from jobengine.config import Settings
from jobengine.errors import JobFunctionError, SerializationError, StoreUnavailable, ValidationError
from jobengine.history.events import add_event
from jobengine.models import NewJob
from jobengine.store.protocol import HistoryStore
from jobengine.types import EventKind, JobStatus

log = logging.getLogger("jobengine.dispatch")

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80


MAX_TIMEOUT = 30 * 86400
"""The longest timeout a job may be given (as worker.job_timeout)."""


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
    timeout: int | None = None  # seconds the job may run; default worker.job_timeout


@dataclass(frozen=True)
class _Prepared:
    spec: JobSpec
    func_name: str
    type: str
    queue: str
    delay: float
    record: NewJob
    data: bytes = b""  # RQ's job `data`: the compressed pickle of (function, None, args, kwargs)


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
        dotted = v.function_name(func).replace(":", ".")
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise JobFunctionError(f"job function {func!r} must be 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise JobFunctionError(f"job function {v.show(func)} does not import: "
                               f"{v.show(str(exc), 200)}") from None
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise JobFunctionError(f"job function {func!r}: {module_name} has no callable {attr!r}")
    return dotted


def check_specs(specs: Sequence[JobSpec], settings: Settings) -> None:
    """Everything about a batch that can be checked without importing: one line for the first bad
    spec (numbered when the batch has several); nothing is written when any spec is bad."""
    seen: set[str] = set()
    for n, spec in enumerate(specs):
        where = f"spec {n + 1} of {len(specs)}: " if len(specs) > 1 else ""
        try:
            _check_spec(spec, settings, seen)
        except ValidationError as exc:
            raise type(exc)(f"{where}{exc}") from None


def _check_spec(spec: JobSpec, settings: Settings, seen: set[str]) -> None:
    if not isinstance(spec, JobSpec):
        raise ValidationError(f"expected a JobSpec, got {type(spec).__name__} {v.show(spec)}")
    if isinstance(spec.func, str):
        name = v.function_name(spec.func)
    elif callable(spec.func):
        name = f"{getattr(spec.func, '__module__', '')}.{getattr(spec.func, '__qualname__', '')}"
    else:
        raise JobFunctionError(f"job function: expected 'package.module:function' or a callable, "
                               f"got {type(spec.func).__name__} {v.show(spec.func)}")
    v.check_allowed(name, settings.dispatch_allow)
    if not isinstance(spec.priority, str):
        raise ValidationError(f"priority: expected one of {', '.join(settings.lanes)}, got {v.show(spec.priority)}")
    v.text(spec.priority, "priority", max_len=v.MAX_TYPE)
    settings.lane(spec.priority)
    if spec.type is not None:
        v.text(spec.type, "type", max_len=v.MAX_TYPE)
    if spec.delay is not None:
        v.number(spec.delay, "delay", 0, v.MAX_DELAY)
    if spec.timeout is not None:
        v.integer(spec.timeout, "timeout", 1, MAX_TIMEOUT)
    if spec.job_id is not None:
        v.job_id(spec.job_id)
        if spec.job_id in seen:
            raise ValidationError(f"job id {spec.job_id!r} appears twice in the batch")
        seen.add(spec.job_id)
    v.job_args(spec.args, spec.kwargs)


def check_serialisable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise SerializationError unless RQ's serializer (pickle) can store the arguments."""
    try:
        pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickle raises many types
        raise SerializationError(f"job arguments cannot be serialised: {exc}") from None


def job_options(settings: Settings, func_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                job_type: str, priority: str, timeout: int | None = None) -> dict[str, Any]:
    """The job hash's options as the `jobs` row keeps them (JSON): all rq_job_hash needs besides
    the data, queue, status and times."""
    return {"timeout": settings.job_timeout if timeout is None else timeout, "result_ttl": settings.result_ttl,
            "failure_ttl": settings.failure_ttl,
            "description": get_call_string(func_name, args, kwargs, max_length=75),
            "meta": {"type": job_type, "priority": priority}}


def rq_job_hash(data: bytes, options: Mapping[str, Any], queue: str, status: JobStatus, created_at: str,
                enqueued_at: str | None, retries: int = 0) -> dict[str, Any]:
    """What RQ's `create_job` + `enqueue_job`/`schedule_job` store for a job (fields RQ leaves
    empty are left out: RQ reads an absent field as an empty one). Times are RQ's utcformat."""
    fields: dict[str, Any] = {
        "created_at": created_at, "data": data, "origin": queue, "timeout": options["timeout"],
        "description": options["description"], "result_ttl": options["result_ttl"],
        "failure_ttl": options["failure_ttl"], "status": status.value,
        "meta": pickle.dumps(dict(options["meta"]), pickle.HIGHEST_PROTOCOL),
    }
    if enqueued_at is not None:
        fields["enqueued_at"] = enqueued_at
    if retries > 0:
        fields["number_of_retries"] = retries
    return fields


def args_repr(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short human-readable rendering of a call's arguments for history and the console."""
    parts = [_repr.repr(a) for a in args] + [f"{k}={_repr.repr(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


class Dispatcher:
    """Turns JobSpecs into RQ jobs on their lanes plus `jobs` rows."""

    def __init__(self, settings: Settings, connection: redis.Redis, store: HistoryStore) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection,
                                       default_timeout=self.settings.job_timeout)
        return self._queues[name]

    def _prepare(self, spec: JobSpec, now: datetime, names: dict[Any, str]) -> _Prepared:
        lane = self.settings.lane(spec.priority)
        key = spec.func if isinstance(spec.func, str) else id(spec.func)  # resolved once per batch
        func_name = names.get(key) or names.setdefault(key, resolve_function(spec.func))
        try:  # as RQ's PickleSerializer stores it; also the serialisability check
            data = zlib.compress(pickle.dumps((func_name, None, spec.args, spec.kwargs), pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # pickle raises many types
            raise SerializationError(f"job arguments cannot be serialised: {exc}") from None
        delay = lane.delay if spec.delay is None else max(0.0, float(spec.delay))
        job_type = spec.type or func_name.rpartition(".")[2]
        options = job_options(self.settings, func_name, spec.args, spec.kwargs, job_type, lane.priority.value,
                              spec.timeout)
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
            payload=data,
            options=options,
        )
        return _Prepared(spec, func_name, job_type, lane.queue, delay, record, data)

    def dispatch_many(self, specs: Sequence[JobSpec]) -> list[str]:
        """Validate every spec, then write rows and enqueue; all or nothing."""
        if not specs:
            return []
        check_specs(specs, self.settings)
        now = datetime.now(UTC)
        names: dict[Any, str] = {}
        prepared = [self._prepare(spec, now, names) for spec in specs]
        for p in prepared:
            if p.spec.job_id is not None:
                validate_job_id(p.spec.job_id)
        prepared = [replace(p, record=replace(p.record, id=p.spec.job_id or str(uuid.uuid4()))) for p in prepared]
        ids = [p.record.id for p in prepared]
        self._enqueue(prepared)  # a RedisError here: nothing written anywhere
        try:
            self.store.insert_jobs([p.record for p in prepared])
        except StoreUnavailable:
            # The events carry the rows to PostgreSQL later, without payload and options (kept
            # out of the stream on purpose): reconcile cannot re-create such a job if Redis loses
            # it before it ran, and reports it as not restorable.
            self._send_events(prepared)
        return ids

    @staticmethod
    def _job_hash(p: _Prepared, stamp: str) -> dict[str, Any]:
        assert p.record.options is not None
        return rq_job_hash(p.data, p.record.options, p.queue, p.record.status, stamp,
                           None if p.delay > 0 else stamp)

    def _enqueue(self, prepared: list[_Prepared]) -> None:
        """One MULTI: a HSET per job, then one RPUSH per queue and one ZADD per scheduled registry."""
        stamp = utcformat(datetime.now(UTC))
        pushes: dict[str, list[str]] = {}
        schedules: dict[str, dict[str, int]] = {}
        with self.connection.pipeline() as pipe:
            for p in prepared:
                job_id = p.record.id
                pipe.hset(f"{Queue.job_class.redis_job_namespace_prefix}{job_id}",
                          mapping=self._job_hash(p, stamp))  # type: ignore[arg-type]  # redis-py's Mapping is invariant
                if p.delay > 0:
                    assert p.record.scheduled_for is not None
                    schedules.setdefault(p.queue, {})[job_id] = calendar.timegm(p.record.scheduled_for.utctimetuple())
                else:
                    pushes.setdefault(p.queue, []).append(job_id)
            for name, ids in pushes.items():
                pipe.rpush(self.queue(name).key, *ids)
            for name, entries in schedules.items():
                pipe.zadd(ScheduledJobRegistry(name, connection=self.connection).key, entries)
            pipe.sadd(Queue.redis_queues_keys, *[self.queue(name).key for name in {**pushes, **schedules}])
            pipe.execute()

    def _send_events(self, prepared: list[_Prepared]) -> None:
        """The rows PostgreSQL did not take, as `queued`/`scheduled` events (one pipeline). The jobs
        are already queued, so a Redis failure here is logged, not raised: the worker's own events
        still give each job a row (without its function and arguments)."""
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                for p in prepared:
                    kind = EventKind.SCHEDULED if p.delay > 0 else EventKind.QUEUED
                    add_event(pipe, kind, p.record.id, p.queue, at=p.record.created_at, type=p.type,
                              priority=p.record.priority, func=p.func_name, args=p.record.args,
                              delay=p.delay or None)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("dispatched %d job(s) without their history rows: PostgreSQL and then Redis "
                        "refused them (%s)", len(prepared), exc)
