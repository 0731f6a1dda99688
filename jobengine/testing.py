"""A test fake for code that dispatches jobs: a pytest plugin (entry point `jobengine.testing`).

    def test_signup_sends_the_welcome_mail(jobs):
        signup(jobs.engine, "ada@example.com")                  # or any real Engine: see below
        jobs.assert_dispatched("myapp.tasks:send_email", lane="high", args=("ada@example.com",))

    def test_the_mail_is_retried(eager_jobs):                     # runs each job at dispatch
        job_id = eager_jobs.engine.dispatch("myapp.tasks:send_email", "ada@example.com")
        assert eager_jobs.get(job_id).attempts == 2

The seam is the dispatch methods: while a test uses `jobs` or `eager_jobs`, `Engine.dispatch`
and `Engine.dispatch_many` of every Engine (however it was built) record the job on the fake
instead of writing to Redis and PostgreSQL; `jobs.engine` is a stand-in with the same methods
for code that takes an engine, so no Engine (and no server) is needed at all. Dispatch validates
as the engine does (unknown priority, a function that does not import, arguments that do not
pickle raise the same `jobengine.errors`; a batch is all or nothing). Eager mode runs the job
at once in this process: arguments travel through pickle, failures go through the same
RetryPolicy (by exception class, attempts counted; retry delays are recorded, not slept), and
the job's status, attempts, log lines and final failure read as the engine's history would.

Override the `jobengine_settings` fixture to test against your configuration (lanes, retry
mapping): `return Settings.load()`.
"""

from __future__ import annotations

import pickle
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from jobengine.config import Settings
from jobengine.models import FailedJob, JobDetail, JobEvent, JobRecord, LogEntry, failure_fingerprint
from jobengine.types import EventKind, JobStatus, Priority

if TYPE_CHECKING:
    from jobengine.dispatch import JobSpec
    from jobengine.retry import RetryPolicy

__all__ = ["DispatchedJob", "FakeEngine", "JobsFake", "eager_jobs", "jobengine_settings", "jobs"]

WORKER = "eager"  # the worker name eager runs record
_LEVELS = {EventKind.FAILED: "error", EventKind.RETRY: "warning", EventKind.STOPPED: "warning",
           EventKind.DEFERRED: "warning"}
_UNSET: Any = object()


def dotted(func: str | Callable[..., Any]) -> str:
    """The name a dispatch of `func` records ('pkg.mod:f' and 'pkg.mod.f' are the same)."""
    if callable(func) and not isinstance(func, str):
        return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}"
    return str(func).strip().replace(":", ".")


@dataclass
class DispatchedJob:
    """One captured dispatch and, once run, what became of it."""

    id: str
    func: str  # the dotted name RQ stores: "myapp.tasks.send_email"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    type: str
    priority: Priority
    queue: str
    delay: float
    dispatched_at: datetime
    status: JobStatus
    attempts: int = 0
    result: Any = None
    exception: BaseException | None = None  # the last exception a run raised
    failure: FailedJob | None = None  # the final failure, as `failed_jobs` records it
    logs: list[LogEntry] = field(default_factory=list)

    @property
    def lane(self) -> str:
        """The priority lane's name: critical, high, normal or low."""
        return self.priority.value

    def record(self) -> JobRecord:
        """The job as its `jobs` row reads (times are those of the eager runs)."""
        from jobengine.dispatch import args_repr

        started = next((e.at for e in reversed(self.logs) if e.kind == "started"), None)
        ended = self.logs[-1].at if self.status in (JobStatus.FINISHED, JobStatus.FAILED) and self.logs else None
        return JobRecord(id=self.id, type=self.type, queue=self.queue, priority=self.priority, status=self.status,
                         attempts=self.attempts, created_at=self.dispatched_at, started_at=started,
                         finished_at=ended, failed_at=ended if self.status is JobStatus.FAILED else None,
                         func=self.func, args=args_repr(self.args, self.kwargs),
                         worker=WORKER if self.attempts else None)

    def describe(self) -> str:
        call = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.func}({call}) lane={self.lane} queue={self.queue} type={self.type} status={self.status}"


class JobsFake:
    """Captured dispatches, assertions over them, and (with `eager`) their runs."""

    def __init__(self, settings: Settings | None = None, *, eager: bool = False) -> None:
        from jobengine.retry import RetryPolicy

        self.settings = settings or Settings()
        self.policy: RetryPolicy = RetryPolicy.from_settings(self.settings)
        self.eager = eager
        self.dispatched: list[DispatchedJob] = []
        self.engine = FakeEngine(self)
        self._failure_ids = 0

    # ---- dispatch (the same validation as Dispatcher.dispatch_many) ------------------------
    def dispatch(self, func: str | Callable[..., Any], *args: Any, type: str | None = None,
                 priority: str = "normal", **kwargs: Any) -> str:
        from jobengine.dispatch import JobSpec

        return self.dispatch_many([JobSpec(func, tuple(args), dict(kwargs), type=type, priority=priority)])[0]

    def dispatch_many(self, specs: Iterable[JobSpec], *, settings: Settings | None = None,
                      policy: RetryPolicy | None = None) -> list[str]:
        """Validate every spec, then record them all (and run them, in eager mode)."""
        batch = [self._prepare(spec, settings or self.settings) for spec in specs]
        self.dispatched.extend(batch)
        if self.eager:
            for job in batch:
                self._run(job, policy or self.policy)
        return [job.id for job in batch]

    def _prepare(self, spec: JobSpec, settings: Settings) -> DispatchedJob:
        from rq.job import validate_job_id

        from jobengine.dispatch import resolve_function
        from jobengine.errors import SerializationError

        lane = settings.lane(spec.priority)
        func = resolve_function(spec.func)
        try:  # what RQ's serializer stores, and so what a worker gets: copies, not the caller's objects
            payload = pickle.dumps((spec.args, spec.kwargs), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickle raises many types
            raise SerializationError(f"job arguments cannot be serialised: {exc}") from None
        if spec.job_id is not None:
            validate_job_id(spec.job_id)
        args, kwargs = pickle.loads(payload)
        delay = lane.delay if spec.delay is None else max(0.0, float(spec.delay))
        return DispatchedJob(id=spec.job_id or str(uuid.uuid4()), func=func, args=args, kwargs=kwargs,
                             type=spec.type or func.rpartition(".")[2], priority=lane.priority, queue=lane.queue,
                             delay=delay, dispatched_at=datetime.now(UTC),
                             status=JobStatus.SCHEDULED if delay > 0 else JobStatus.QUEUED)

    # ---- running ---------------------------------------------------------------------------
    def run_pending(self) -> int:
        """Run every captured job still queued or scheduled (delays skipped); returns how many ran."""
        pending = [job for job in self.dispatched if job.status in (JobStatus.QUEUED, JobStatus.SCHEDULED)]
        for job in pending:
            self._run(job, self.policy)
        return len(pending)

    def _run(self, job: DispatchedJob, policy: RetryPolicy) -> None:
        """Run attempts until one succeeds or the policy gives up, recording what the worker would."""
        from rq.utils import import_attribute

        policy.validate()  # as a worker does before it starts
        target = import_attribute(job.func)
        while True:
            attempt = job.attempts = job.attempts + 1
            job.status = JobStatus.PROCESSING
            args, kwargs = pickle.loads(pickle.dumps((job.args, job.kwargs), pickle.HIGHEST_PROTOCOL))
            self._log(job, EventKind.STARTED, attempt=attempt, worker=WORKER)
            began = time.perf_counter()
            try:
                job.result = target(*args, **kwargs)
            except Exception as exc:
                job.exception = exc
                decision = policy.decide(exc, attempt)
                errors = _error_details(exc)
                if decision.retry:
                    job.status = JobStatus.SCHEDULED
                    self._log(job, EventKind.RETRY, attempt=attempt, delay=round(decision.delay, 3),
                              message=f"retry {attempt + 1} in {decision.delay:.1f}s ({decision.strategy}) after "
                                      f"{type(exc).__name__}: {exc}", **errors)
                    continue
                job.status = JobStatus.FAILED
                entry = self._log(job, EventKind.FAILED, attempt=attempt, **errors)
                self._failure_ids += 1
                job.failure = FailedJob(id=self._failure_ids, job_id=job.id, type=job.type, queue=job.queue,
                                        error_class=errors["error_class"], error_message=errors["error_message"],
                                        traceback=errors["traceback"], failed_at=entry.at, attempts=attempt,
                                        fingerprint=failure_fingerprint(errors["error_class"],
                                                                        errors["error_message"]))
                return
            job.status = JobStatus.FINISHED
            self._log(job, EventKind.FINISHED, attempt=attempt, duration=time.perf_counter() - began)
            return

    def _log(self, job: DispatchedJob, kind: EventKind, **details: Any) -> LogEntry:
        from jobengine.store.postgres import event_message  # the history writer's own sentences

        event = JobEvent(event_id="", kind=kind, job_id=job.id, at=datetime.now(UTC), queue=job.queue, type=job.type,
                         priority=job.priority, **details)
        entry = LogEntry(at=event.at, kind=kind.value, level=_LEVELS.get(kind, "info"), message=event_message(event),
                         attempt=event.attempt, delay=event.delay)
        job.logs.append(entry)
        return entry

    # ---- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> DispatchedJob:
        """The captured job with this id (JobNotFound if none)."""
        for job in self.dispatched:
            if job.id == job_id:
                return job
        from jobengine.errors import JobNotFound

        raise JobNotFound(f"no job {job_id!r} was dispatched in this test")

    def find(self, func: str | Callable[..., Any] | None = None, *, lane: str | None = None,
             queue: str | None = None, type: str | None = None, args: Any = _UNSET, kwargs: Any = _UNSET,
             status: JobStatus | str | None = None,
             where: Callable[[DispatchedJob], bool] | None = None) -> list[DispatchedJob]:
        """Captured jobs matching every filter given, in dispatch order."""
        name = dotted(func) if func is not None else None
        return [job for job in self.dispatched
                if (name is None or job.func == name) and (lane is None or job.lane == lane)
                and (queue is None or job.queue == queue) and (type is None or job.type == type)
                and (args is _UNSET or job.args == tuple(args)) and (kwargs is _UNSET or job.kwargs == kwargs)
                and (status is None or job.status == status) and (where is None or where(job))]

    @property
    def finished(self) -> list[DispatchedJob]:
        return self.find(status=JobStatus.FINISHED)

    @property
    def failed(self) -> list[DispatchedJob]:
        return self.find(status=JobStatus.FAILED)

    def clear(self) -> None:
        self.dispatched.clear()

    # ---- assertions ------------------------------------------------------------------------
    def assert_dispatched(self, func: str | Callable[..., Any], *, times: int | None = None,
                          **filters: Any) -> DispatchedJob:
        """Assert `func` was dispatched (exactly `times` times, if given) with every filter of
        `find` (lane, queue, type, args, kwargs, status, where); returns the last match."""
        matches = self.find(func, **filters)
        if not matches or (times is not None and len(matches) != times):
            wanted = ", ".join([dotted(func), *(f"{k}={v!r}" for k, v in filters.items())])
            count = "at least once" if times is None else f"{times} time{'s' if times != 1 else ''}"
            raise AssertionError(f"expected a dispatch of {wanted} {count}, matched {len(matches)}; "
                                 f"dispatched:{self._listing()}")
        return matches[-1]

    def assert_not_dispatched(self, func: str | Callable[..., Any], **filters: Any) -> None:
        matches = self.find(func, **filters)
        if matches:
            raise AssertionError(f"expected no dispatch of {dotted(func)}, got {len(matches)}:"
                                 + "".join(f"\n  - {job.describe()}" for job in matches))

    def assert_nothing_dispatched(self) -> None:
        if self.dispatched:
            raise AssertionError(f"expected no dispatch, got {len(self.dispatched)}:{self._listing()}")

    def _listing(self) -> str:
        if not self.dispatched:
            return " nothing"
        return "".join(f"\n  - {job.describe()}" for job in self.dispatched)

    def __len__(self) -> int:
        return len(self.dispatched)

    def __iter__(self) -> Iterator[DispatchedJob]:
        return iter(self.dispatched)


class FakeEngine:
    """A stand-in Engine for code that takes one: dispatch, dispatch_many and the job reads."""

    def __init__(self, fake: JobsFake) -> None:
        self.fake = fake
        self.settings = fake.settings
        self.policy = fake.policy

    def dispatch(self, func: str | Callable[..., Any], *args: Any, type: str | None = None,
                 priority: str = "normal", **kwargs: Any) -> str:
        return self.fake.dispatch(func, *args, type=type, priority=priority, **kwargs)

    def dispatch_many(self, specs: Iterable[JobSpec]) -> list[str]:
        return self.fake.dispatch_many(specs)

    def job_status(self, job_id: str) -> str | None:
        """As Engine.job_status: the JobStatus value, None for an unknown job."""
        job = next((j for j in self.fake.dispatched if j.id == job_id), None)
        return job.status.value if job is not None else None

    def job_detail(self, job_id: str) -> JobDetail | None:
        """As Engine.job_detail: the record, its log lines, the final failure and its strategy."""
        job = next((j for j in self.fake.dispatched if j.id == job_id), None)
        if job is None:
            return None
        strategy = self.policy.strategy_for_name(job.failure.error_class) if job.failure else None
        return JobDetail(record=job.record(), logs=tuple(job.logs), failure=job.failure,
                         retry_strategy=strategy.name if strategy else None)


def _error_details(exc: BaseException) -> dict[str, str]:
    """The failure fields a worker records (dotted class name without 'builtins.')."""
    cls = type(exc)
    return {"error_class": f"{cls.__module__}.{cls.__qualname__}".removeprefix("builtins."),
            "error_message": str(exc), "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__))}


def _install(fake: JobsFake, monkeypatch: pytest.MonkeyPatch) -> JobsFake:
    """Route every Engine's dispatch methods to `fake` (with that engine's lanes and policy)."""
    from jobengine.engine import Engine

    def dispatch(engine: Engine, func: str | Callable[..., Any], *args: Any, type: str | None = None,
                 priority: str = "normal", **kwargs: Any) -> str:
        from jobengine.dispatch import JobSpec

        spec = JobSpec(func, tuple(args), dict(kwargs), type=type, priority=priority)
        return fake.dispatch_many([spec], settings=engine.settings, policy=engine.policy)[0]

    def dispatch_many(engine: Engine, specs: Iterable[JobSpec]) -> list[str]:
        return fake.dispatch_many(specs, settings=engine.settings, policy=engine.policy)

    monkeypatch.setattr(Engine, "dispatch", dispatch)
    monkeypatch.setattr(Engine, "dispatch_many", dispatch_many)
    return fake


@pytest.fixture
def jobengine_settings() -> Settings:
    """The settings the fake validates and retries with (defaults); override it in a conftest."""
    return Settings()


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch, jobengine_settings: Settings) -> JobsFake:
    """Capture dispatches: nothing reaches Redis or PostgreSQL. `jobs.eager = True` runs them."""
    return _install(JobsFake(jobengine_settings), monkeypatch)


@pytest.fixture
def eager_jobs(monkeypatch: pytest.MonkeyPatch, jobengine_settings: Settings) -> JobsFake:
    """Capture dispatches and run each at once, in this process, through the retry policy."""
    return _install(JobsFake(jobengine_settings, eager=True), monkeypatch)
