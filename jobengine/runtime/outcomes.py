"""What the fast worker writes when a job ends: finished, failed (retried, failed for good,
stopped) or deferred by its queue's rate limit. Each adds to the worker's pending block (RQ's own
bookkeeping calls on `_pending`, history and metrics on `_recorder`, finished jobs as `finish.lua`
arguments); nothing here talks to Redis. Called with the worker's lock held."""

from __future__ import annotations

import logging
import sys
import threading
import time
from base64 import b64encode
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rq.callbacks import execute_failure_callback, execute_stopped_callback
from rq.defaults import UNSERIALIZABLE_RETURN_VALUE_PAYLOAD
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.repeat import Repeat
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

    @property
    def member(self) -> str:
        return f"{self.job.id}:{self.exec_id}"


class Outcomes:
    """The fast worker's outcome handlers (a mixin of `FastWorker`)."""

    name: str
    key: str
    death_penalty_class: Any
    default_result_ttl: int
    executions: dict[str, Execution]
    policy: RetryPolicy
    gate: QueueGate
    _lock: threading.Lock
    _pending: Any
    _recorder: Recorder
    _ended: list[Job]
    _finished: list[Job]
    _finish_args: tuple[Any, ...]
    _in_hand: deque[Held]
    _stopped_job_id: str | None

    if TYPE_CHECKING:  # provided by FastWorker and RQ's BaseWorker (stubs here would shadow them)
        def _queue(self, name: str) -> Queue: ...
        def handle_exception(self, job: Job, *exc_info: Any) -> None: ...
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
        job._status = JobStatus.FINISHED
        if job.repeats_left:  # RQ's own path for repeating jobs (rare): result, then the next run
            self._end(item, pipe)
            if ttl != 0:
                job._handle_success(ttl, pipe, worker_name=self.name, execution_id=item.exec_id,
                                    execution_started_at=started, execution_ended_at=ended)
            Repeat.schedule(job, self._queue(item.queue), pipeline=pipe)
            self._ended.append(job)
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
        duration = (ended - started).total_seconds()
        self._recorder.hincrby(self.key, "successful_job_count", 1)
        self._recorder.hincrbyfloat(self.key, "total_working_time", duration)
        record(self._recorder, EventKind.FINISHED, job.id, item.queue, **self._fold_start(item),
               type=job_type(job), duration=f"{duration:.6f}",
               attempt=attempt_of(job), worker=self.name)

    def _failed(self, item: Held, exc_info: ExcInfo) -> None:
        """Retry by our policy (exception class), else by the job's own RQ Retry, else fail/stop as RQ."""
        job, pipe, queue = item.job, self._pending, self._queue(item.queue)
        stopped = isinstance(exc_info[1], JobStopped) or self._stopped_job_id == job.id
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
            queue.schedule_job(job, now() + timedelta(seconds=decision.delay), pipeline=pipe)
        elif entry.status is None:  # a plain RQ job with its own Retry(...)
            job.retry(queue, pipe)
        else:
            job.set_status(entry.status, pipeline=pipe)
            job._handle_failure(format_traceback(exc_info), pipe, worker_name=self.name, execution_id=item.exec_id,
                                execution_started_at=job.started_at, execution_ended_at=job.ended_at)
            if stopped:
                self._stopped_job_id = None
            self._ended.append(job)
        record(self._recorder, entry.kind, job.id, item.queue, **entry.fields)
        if entry.log:
            log.info(*entry.log)

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
