"""What the fast worker writes when a job ends: finished, failed (retried, failed for good,
stopped) or deferred by its queue's rate limit. Each adds to the worker's pending block (RQ's own
bookkeeping calls on `_pending`, history and metrics on `_recorder`, finished jobs as `finish.lua`
arguments); nothing here talks to Redis. Called with the worker's lock held.

The rare outcomes whose RQ bookkeeping reads Redis (a job that returned `rq.Retry`, a repeating or
RQ rate-limited job, a `result_ttl=0` job in a group) are queued on `_rq_way`: the worker hands
them to RQ's own `handle_job_retry` / `handle_job_success` once its lock is released
(`_settle_rq_way`), so they behave exactly as under RQ's worker."""

from __future__ import annotations

import logging
import sys
import threading
import time
from base64 import b64encode
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rq.callbacks import execute_failure_callback, execute_stopped_callback
from rq.defaults import UNSERIALIZABLE_RETURN_VALUE_PAYLOAD
from rq.executions import Execution
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.rate_limit import release_slot
from rq.utils import now

from jobengine import keys
from jobengine.retry import RetryPolicy
from jobengine.runtime import records
from jobengine.runtime.bookkeeping import Recorder, record
from jobengine.runtime.gate import QueueGate
from jobengine.runtime.jobinfo import ExcInfo, JobStopped, attempt_of, format_traceback, job_type
from jobengine.types import EventKind

log = logging.getLogger("jobengine.worker")


def stamp(moment: datetime) -> str:
    """RQ's `utcformat` (2026-01-02T03:04:05.678901Z) at a fraction of strftime's cost."""
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass
class Held:
    """A job this worker marked started: in hand (waiting for its turn) or running."""

    job: Job
    queue: str
    exec_id: str
    since: float = 0.0  # monotonic start of the run
    beat: float = 0.0  # last started-registry refresh (jobs without timeout)
    execution: Execution | None = None  # RQ's record, written once the run passes execution_after
    front_fix: bool = False  # a deferral set enqueue_at_front; reset it so retries go to the back
    started_entry: tuple[Recorder, int] | None = None  # its `started` event, while not sent yet
    requeued: bool = False  # it ran before and came back through RQ's requeue (rq-dashboard, `rq requeue`)

    @property
    def member(self) -> str:
        return f"{self.job.id}:{self.exec_id}"

    def execution_record(self, connection: Any, worker: str) -> Execution:
        """RQ's Execution of this run (the one written by the watcher, or one naming it)."""
        if self.execution is not None:
            return self.execution
        execution = Execution(self.exec_id, self.job.id, connection, worker_name=worker)
        execution.created_at = execution.last_heartbeat = self.job.started_at or now()
        return execution


class Outcomes:
    """The fast worker's outcome handlers (a mixin of `FastWorker`)."""

    name: str
    key: str
    connection: Any
    death_penalty_class: Any
    default_result_ttl: int
    disable_default_exception_handler: bool
    executions: dict[str, Execution]
    policy: RetryPolicy
    gate: QueueGate
    _lock: threading.Lock
    _pending: Any
    _recorder: Recorder
    _ended: list[Job]
    _finished: list[Job]
    _finish_args: tuple[Any, ...]
    _retried: list[Job]  # retried with a delay or at once: their RQ rate-limit slot is released
    _exc_strings: dict[str, str]  # failed jobs' RQ exc_string, for their `failed` webhooks
    _rq_way: list[tuple[Held, Any]]  # outcomes left to RQ's own handlers (see the module docstring)
    _more: bool  # jobs were (re)enqueued after the last dequeue: a burst worker looks again
    _in_hand: deque[Held]
    _stopped_job_id: str | None

    if TYPE_CHECKING:  # provided by FastWorker and RQ's BaseWorker (stubs here would shadow them)
        def _queue(self, name: str) -> Queue: ...
        def handle_exception(self, job: Job, *exc_info: Any) -> None: ...
        def handle_job_retry(self, job: Job, queue: Queue, retry: Retry, started_job_registry: Any,
                             execution: Execution) -> None: ...
        def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any,
                               execution: Execution) -> None: ...
        def _release_in_hand(self, queue: str | None = None, ahead: bool = False) -> None: ...

    def _fold_start(self, item: Held) -> dict[str, str]:
        """If the run's `started` event has not left yet, drop it: the run's end carries its
        start (`started`, epoch seconds) and the history writer records both. Fast jobs send one
        event instead of two; a job that runs past a flush keeps its own `started` event."""
        held, item.started_entry = item.started_entry, None
        if held is None or held[0] is not self._recorder or item.job.started_at is None:
            return {}
        self._recorder.retract(held[1])
        return {"started": f"{item.job.started_at.timestamp():.6f}"}

    def _end(self, item: Held, pipe: Any) -> None:
        """Out of the started registry (and RQ's execution record, if one was written)."""
        pipe.zrem(keys.rq_started_key(item.queue), item.member)
        if item.execution is not None:
            item.execution.delete(item.job, pipe)
            self.executions.pop(item.exec_id, None)

    def _succeeded(self, item: Held, value: Any) -> None:
        job, pipe = item.job, self._pending
        ttl = job.get_result_ttl(self.default_result_ttl)
        started, ended = job.started_at, job.ended_at
        assert started is not None and ended is not None
        duration = (ended - started).total_seconds()
        if isinstance(value, Retry):  # RQ's retry-by-return: RQ's handler, our history
            self._rq_way.append((item, value))
            self._record_returned_retry(item, value, duration)
            return
        job._status = JobStatus.FINISHED
        if job.repeats_left or job.has_rate_limit or (ttl == 0 and job.group_id):
            self._rq_way.append((item, value))  # RQ's handler counts the job for the worker
        else:  # one finish.lua call for the whole batch
            if item.execution is not None:
                self._end(item, pipe)
            try:
                payload = job.serializer.dumps(value)
            except Exception:  # as RQ's Result.serialize
                payload = job.serializer.dumps(UNSERIALIZABLE_RETURN_VALUE_PAYLOAD)
            self._finished.append(job)
            self._finish_args += (job.id, item.queue, item.exec_id, stamp(started), stamp(ended),
                                  repr(started.timestamp()), repr(ended.timestamp()), ttl,
                                  "" if value is None else b64encode(payload).decode(),
                                  ("f" if item.front_fix else "") + ("d" if job._dependency_ids else ""))
            self._recorder.hincrby(self.key, "successful_job_count", 1)
            self._recorder.hincrbyfloat(self.key, "total_working_time", duration)
        record(self._recorder, EventKind.FINISHED, job.id, item.queue, **self._fold_start(item),
               type=job_type(job), duration=f"{duration:.6f}",
               attempt=attempt_of(job), worker=self.name)

    def _record_returned_retry(self, item: Held, retry: Retry, duration: float) -> None:
        """The history of a run that returned `rq.Retry`: retried, or failed once `retry.max` is reached."""
        job = item.job
        fields: dict[str, Any] = {**self._fold_start(item), "type": job_type(job), "attempt": attempt_of(job),
                                  "worker": self.name, "duration": f"{duration:.6f}"}
        if job.number_of_retries and job.number_of_retries >= retry.max:
            record(self._recorder, EventKind.FAILED, job.id, item.queue, **fields, error_class="rq.job.Retry",
                   error_message=f"returned Retry(max={retry.max}) with no retries left")
        else:
            delay = Retry.get_interval(job.number_of_retries or 0, retry.intervals)
            record(self._recorder, EventKind.RETRY, job.id, item.queue, **fields, delay=delay,
                   message=f"returned Retry(max={retry.max}): retry {attempt_of(job) + 1} in {delay}s")

    def _settle_rq_way(self) -> None:
        """Hand the outcomes queued on `_rq_way` to RQ's own handlers (lock NOT held: they talk to
        Redis), then send what RQ's worker sends after them (webhooks)."""
        while self._rq_way:
            item, value = self._rq_way.pop(0)
            job, queue = item.job, self._queue(item.queue)
            execution = item.execution_record(self.connection, self.name)
            if isinstance(value, Retry):
                self.handle_job_retry(job, queue, value, queue.started_job_registry, execution)
                continue
            job._result = value
            self.handle_job_success(job, queue, queue.started_job_registry, execution)
            job.send_webhooks(JobStatus.FINISHED)
        self._more = True  # a requeued retry, a repeat or dependents may be waiting

    def _failed(self, item: Held, exc_info: ExcInfo) -> None:
        """Retry by our policy (exception class), else by the job's own RQ Retry, else fail/stop as RQ."""
        job, pipe, queue = item.job, self._pending, self._queue(item.queue)
        stopped = isinstance(exc_info[1], JobStopped) or self._stopped_job_id == job.id
        job._status = JobStatus.STOPPED if stopped else JobStatus.FAILED  # what the callbacks read, as in RQ
        try:
            if stopped:
                execute_stopped_callback(job, self.death_penalty_class)
            else:
                execute_failure_callback(job, self.death_penalty_class, *exc_info)
        except Exception:  # a failing callback replaces the job's exception, as in RQ
            exc_info = sys.exc_info()
        self.handle_exception(job, *exc_info)
        exc = exc_info[1]
        assert job.started_at is not None and job.ended_at is not None
        duration = (job.ended_at - job.started_at).total_seconds()
        decision = records.decide(self.policy, exc, attempt_of(job), stopped)
        self._end(item, pipe)
        self._recorder.hincrby(self.key, "failed_job_count", 1)
        self._recorder.hincrbyfloat(self.key, "total_working_time", duration)
        entry = records.failure(job, exc, decision, worker=self.name, duration=duration, stopped=stopped,
                                started=self._fold_start(item).get("started"))
        if decision.retry:
            job.number_of_retries = attempt_of(job)
            job._status = JobStatus.SCHEDULED
            queue.schedule_job(job, now() + timedelta(seconds=decision.delay), pipeline=pipe)
            self._retried.append(job)
        elif entry.status is None:  # a plain RQ job with its own Retry(...)
            job.retry(queue, pipe)
            self._retried.append(job)
        else:
            job.set_status(entry.status, pipeline=pipe)
            exc_string = format_traceback(exc_info)
            if not self.disable_default_exception_handler:  # as RQ: no failed registry entry, no Result
                job._handle_failure(exc_string, pipe, worker_name=self.name, execution_id=item.exec_id,
                                    execution_started_at=job.started_at, execution_ended_at=job.ended_at)
            if stopped:
                self._stopped_job_id = None
            else:
                self._exc_strings[job.id] = exc_string
            self._ended.append(job)
        record(self._recorder, entry.kind, job.id, item.queue, **entry.fields)
        if entry.log:
            log.info(*entry.log)

    def _enqueue_dependents(self, job: Job, refresh: bool = True) -> None:
        """RQ's `enqueue_dependents` after `job`'s outcome is committed (a finished job's status is
        known here: it may be gone from Redis, result_ttl=0). Errors are logged, as RQ's worker does."""
        try:
            if self._queue(job.origin).enqueue_dependents(job, refresh_job_status=refresh):
                self._more = True
            if not refresh and job.get_result_ttl(self.default_result_ttl) == 0:
                self.connection.delete(job.dependents_key)  # as RQ's job.delete(), after the move
        except Exception:
            log.exception("worker %s: failed to enqueue dependents of job %s", self.name, job.id)

    def _release_slots(self, jobs: Sequence[Job]) -> None:
        """RQ rate limits: the slots of jobs that ended a run (release_slot keeps a requeued job's)."""
        for job in jobs:
            if job.has_rate_limit:
                try:
                    if release_slot(job):  # jobs waiting for the slot were enqueued
                        self._more = True
                except Exception:
                    log.exception("worker %s: failed to release the rate-limit slot of job %s", self.name, job.id)

    def _defer(self, item: Held, delay: float) -> None:
        """Back to the scheduled registry until the queue has a slot: not run, not an attempt.
        Logged once per job; a `deferred` event each time; the queue is left alone for `delay`."""
        job = item.job
        deferred = records.deferral(job, delay, self.gate.reason(job.origin), worker=self.name, now=time.time())
        job.meta["deferrals"] = deferred.deferrals
        job.enqueue_at_front = True
        job.started_at = job.worker_name = job.last_heartbeat = None
        with self._lock:
            self._pending.zrem(keys.rq_started_key(item.queue), item.member)
            self._queue(item.queue).schedule_job(job, deferred.when, pipeline=self._pending)
            record(self._recorder, deferred.entry.kind, job.id, item.queue, **deferred.entry.fields)
        self.gate.hold(item.queue, delay)
        if deferred.entry.log:
            log.info(*deferred.entry.log)
        self._release_in_hand(item.queue)
