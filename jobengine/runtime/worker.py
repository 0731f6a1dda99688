"""The headless worker: RQ's worker with our retry policy, history events and timing.

`JobWorker` runs jobs in-process (RQ's SimpleWorker: fastest, no isolation); `ForkingJobWorker`
forks a work horse per job (RQ's Worker: a crashing or leaking job cannot take the worker down).
Both take lanes in the order given (critical, high, default, low by default), so a job on a
higher lane always runs before one on a lower lane. History events ride in the pipelines RQ
already sends for each job: recording history costs no extra round trip.

Before a job runs, `before_run` asks the worker's `QueueGate` (runtime/gate.py) for a slot under
its queue's rate limit. A slot opening within IN_HAND_WAIT is waited for; otherwise the job is
deferred (back to the scheduled registry until a slot opens: not run, not an attempt) and the
worker stops taking that queue until then, while it keeps serving the other lanes.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.utils import get_version, now
from rq.worker import SimpleWorker, Worker
from rq.worker_registration import register as rq_register

from jobengine.config import Settings
from jobengine.ratelimit import RateLimiter
from jobengine.retry import RetryDecision, RetryPolicy
from jobengine.runtime import records
from jobengine.runtime.allow import check_job_allowed
from jobengine.runtime.bookkeeping import abandoned_job_recorder, record
from jobengine.runtime.gate import QueueGate
from jobengine.runtime.jobinfo import (
    MAX_TRACEBACK,
    STOP_SIGNAL,
    WORKER_TTL,
    ExcInfo,
    JobStopped,
    attempt_of,
    escape_log_text,
    job_type,
    safe_text,
)
from jobengine.runtime.recovery import Recovery
from jobengine.types import EventKind

log = logging.getLogger("jobengine.worker")

__all__ = ["EngineWorkerMixin", "ForkingJobWorker", "JobWorker"]


class EngineWorkerMixin:
    """Hooks added to RQ's worker classes. Expects `settings` and `policy` set by `configure`."""

    settings: Settings
    policy: RetryPolicy
    connection: Any
    log: logging.Logger
    name: str
    worker_ttl: int
    _ordered_queues: list[Queue]
    _stopped_job_id: str | None

    def __init__(self, *args: Any, worker_ttl: int | None = None, **kwargs: Any) -> None:
        """RQ's worker arguments. Without a `worker_ttl`, `configure` sets our WORKER_TTL (60 s)."""
        self._ttl_given = bool(worker_ttl or kwargs.get("default_worker_ttl"))
        self._last_exc: BaseException | None = None
        self._pending_event: records.Entry | None = None
        self._current: Job | None = None
        self._lmoved = False  # the job came through RQ's intermediate queue (one queue listened to)
        super().__init__(*args, worker_ttl=worker_ttl, **kwargs)  # type: ignore[call-arg]
        escape_log_text(self.log)  # a job's error text may hold lone surrogates

    if not TYPE_CHECKING:  # (hidden from the type checker: every attribute would become Any)
        def __getattr__(self, name: str) -> Any:
            """A worker built by RQ (`rq worker -w ...JobWorker`, RQ's API) and never configured
            takes its settings from the configuration file and environment on first use."""
            if name in ("settings", "policy", "gate", "recovery") and "connection" in self.__dict__ \
                    and "settings" not in self.__dict__:
                settings = Settings.load()
                self.configure(settings, RetryPolicy.from_settings(settings))
                return self.__dict__[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def configure(self, settings: Settings, policy: RetryPolicy, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.gate = QueueGate(limiter or RateLimiter.from_settings(self.connection, settings))
        if not self._ttl_given:  # a worker_ttl the user chose is kept
            self.worker_ttl = WORKER_TTL
        self.push_exc_handler(abandoned_job_recorder(self.connection, self.name))  # type: ignore[attr-defined]
        self.recovery = Recovery(self.connection, settings, policy, who=self.name,
                                 serializer=getattr(self, "serializer", None))

    # ---- maintenance: recovery of dead fast workers, registration -------------------------
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; the worker registers again if its registration vanished (a Redis
        reset), and recovery of dead fast workers runs when due (runtime/recovery.py)."""
        if pipeline is not None:  # RQ's maintain_heartbeats re-creates a vanished hash itself
            super().heartbeat(timeout, pipeline)  # type: ignore[misc]
            rq_register(self, pipeline)  # type: ignore[arg-type]
        else:
            with self.connection.pipeline() as pipe:
                super().heartbeat(timeout, pipe)  # type: ignore[misc]
                new = pipe.execute()[0]  # HSET last_heartbeat: 1 when the hash was gone
            if new:
                log.warning("worker %s: its RQ registration was gone; registering again", self.name)
                with self.connection.pipeline() as pipe:
                    pipe.hset(self.key, mapping=self.serialize())  # type: ignore[attr-defined]
                    pipe.expire(self.key, timeout or self.worker_ttl + 60)  # type: ignore[attr-defined]
                    rq_register(self, pipe)  # type: ignore[arg-type]
                    pipe.execute()
        try:
            self.recovery.maybe_run()
        except Exception as exc:  # recovery must never stop the worker; the next heartbeat tries again
            log.warning("worker %s: recovery failed: %s", self.name, exc)

    # ---- rate-limit gate -----------------------------------------------------------------
    def before_run(self, job: Job) -> float | None:
        """The gate: None to run `job` now (its slot is taken), else seconds to defer it."""
        return self.gate.admit(job.origin, job.id)

    def execute_job(self, job: Job, queue: Queue) -> None:
        delay = self.before_run(job)
        if delay is not None:
            delay = self.gate.wait_in_hand(delay, lambda: self.before_run(job))
        if delay is not None:
            self.defer_job(job, queue, delay)
            return
        super().execute_job(job, queue)  # type: ignore[misc]

    def defer_job(self, job: Job, queue: Queue, delay: float) -> None:
        """Back to the scheduled registry until its queue has a slot: not run, not an attempt.

        Goes back to the front of its queue when due; logged once per job, recorded in history
        (`deferred`) every time. This worker then leaves the queue alone for `delay` seconds.
        """
        deferred = records.deferral(job, delay, self.gate.reason(job.origin), worker=self.name, now=time.time())
        job.meta["deferrals"] = deferred.deferrals
        job.enqueue_at_front = True
        with self.connection.pipeline() as pipeline:
            if len(self.queues) == 1 or self._lmoved:  # type: ignore[attr-defined]
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            queue.schedule_job(job, deferred.when, pipeline=pipeline)
            record(pipeline, deferred.entry.kind, job.id, job.origin, **deferred.entry.fields)
            pipeline.execute()
        self.gate.hold(job.origin, delay)
        if deferred.entry.log:
            log.info(*deferred.entry.log)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        """RQ's dequeue, skipping the queues whose rate limit has no slot for this worker yet."""
        idle_since = time.monotonic()
        while True:
            clock = time.monotonic()
            closed = self.gate.closed()
            if not closed:
                self._lmoved = False
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
            if max_idle_time is not None and clock - idle_since >= max_idle_time:
                return None
            everything = self._ordered_queues
            open_queues = [q for q in everything if q.name not in closed]
            wait = min(closed.values()) - clock
            if not open_queues:
                if timeout is None:
                    return None  # burst: nothing may run now
                self._wait_for_slot(wait)
                continue
            step = max(1, math.ceil(wait))
            self._ordered_queues = open_queues
            try:
                result = super().dequeue_job_and_maintain_ttl(  # type: ignore[misc]
                    None if timeout is None else min(timeout, step), None if timeout is None else step)
            finally:
                self._ordered_queues = everything
            if result is not None or timeout is None:
                self._lmoved = result is not None and len(open_queues) == 1 and len(everything) > 1 \
                    and get_version(self.connection) >= (6, 2, 0)
                return result

    def _wait_for_slot(self, seconds: float) -> None:
        """Every queue is at its limit: sleep until the first slot, heartbeating."""
        end = time.monotonic() + seconds
        while not getattr(self, "_stop_requested", False):
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 5.0))
            self.heartbeat()

    # ---- start ---------------------------------------------------------------------------
    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's bookkeeping before a run, plus the `started` event, in the same pipeline."""
        self._current = job
        requeued = bool(job.worker_name) and job.started_at is None  # ran before; RQ's requeue cleared the run
        with self.connection.pipeline() as pipeline:
            if requeued:  # a failure put back through RQ's API (rq-dashboard, `rq requeue`): off our failed list
                record(pipeline, EventKind.REQUEUED, job.id, job.origin, at=job.enqueued_at, type=job_type(job),
                       message="requeued through RQ")
            heartbeat_ttl = self.get_heartbeat_ttl(job)  # type: ignore[attr-defined]
            self.heartbeat(heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            if remove_from_intermediate_queue or self._lmoved:
                queue = Queue(job.origin, connection=self.connection)
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            if job.meta.get("deferrals") and job.enqueue_at_front:
                pipeline.hset(job.key, "enqueue_at_front", 0)  # set by the deferral; retries go to the back
            record(pipeline, EventKind.STARTED, job.id, job.origin, type=job_type(job),
                      attempt=attempt_of(job), worker=self.name)
            pipeline.execute()
        check_job_allowed(job, self.settings)  # [dispatch] allow: RQ's perform_job records the failure

    # ---- success -------------------------------------------------------------------------
    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        """Called by RQ inside the success pipeline: add the `finished` event there."""
        super().increment_successful_job_count(pipeline)  # type: ignore[misc]
        job = self._current
        if job is not None and pipeline is not None:
            duration = self._duration(job)
            record(pipeline, EventKind.FINISHED, job.id, job.origin, type=job_type(job),
                      duration=f"{duration:.6f}", attempt=attempt_of(job), worker=self.name)

    # ---- failure -------------------------------------------------------------------------
    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: ExcInfo) -> None:
        self._last_exc = exc_info[1]
        super()._finalize_failure(job, queue, execution, exc_info)  # type: ignore[misc]

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Execution | None = None) -> None:
        """Retry by our policy (exception class -> strategy), else let RQ fail or stop the job."""
        exc, self._last_exc = self._last_exc, None
        exc_string = safe_text(exc_string, MAX_TRACEBACK, keep_tail=True)  # RQ stores it UTF-8 encoded
        self._current = job  # also set in a forking worker's parent, which handles a killed horse
        duration = self._duration(job)
        stopped = self._stopped_job_id == job.id
        decision = records.decide(self.policy, exc, attempt_of(job), stopped)
        entry = records.failure(job, exc, decision, worker=self.name, duration=duration, stopped=stopped,
                                exc_string=exc_string)
        if decision.retry:
            self._schedule_retry(job, queue, execution, decision, entry)
            return
        self._pending_event = entry
        try:
            super().handle_job_failure(job, queue, started_job_registry, exc_string,  # type: ignore[misc]
                                       execution)
        finally:
            self._pending_event = None

    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        """Called by RQ inside the failure pipeline: add the pending event there."""
        super().increment_failed_job_count(pipeline)  # type: ignore[misc]
        job = self._current
        if self._pending_event is not None and job is not None and pipeline is not None:
            entry = self._pending_event
            record(pipeline, entry.kind, job.id, job.origin, **entry.fields)
            self._pending_event = None

    def _schedule_retry(self, job: Job, queue: Queue, execution: Execution | None,
                        decision: RetryDecision, entry: records.Entry) -> None:
        """Put the job back on its queue after the decided delay, in one pipeline."""
        when = now() + timedelta(seconds=decision.delay)
        with self.connection.pipeline() as pipeline:
            job.number_of_retries = attempt_of(job)
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)  # type: ignore[attr-defined]
            self.increment_failed_job_count(pipeline)
            queue.schedule_job(job, when, pipeline=pipeline)
            record(pipeline, entry.kind, job.id, job.origin, **entry.fields)
            pipeline.execute()
        log.info(*entry.log)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        try:
            return super().perform_job(job, queue, execution)  # type: ignore[misc]
        finally:
            self._current = None

    # ---- helpers -------------------------------------------------------------------------
    def _duration(self, job: Job) -> float:
        if job.started_at is None:
            return 0.0
        return max(0.0, ((job.ended_at or now()) - job.started_at).total_seconds())



class JobWorker(EngineWorkerMixin, SimpleWorker):
    """Runs jobs in the worker process (default: fastest).

    Stopping a running job (`engine.cancel`, RQ's `send_stop_job_command`) has no horse to kill
    here, so the pubsub thread signals the process and the main thread raises `JobStopped`
    inside the job, even in a blocking call such as `time.sleep`.
    """

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        signal.signal(STOP_SIGNAL, self._stop_current_job)

    def _stop_current_job(self, signum: int, frame: Any) -> None:
        job = self._current
        if job is not None and self._stopped_job_id == job.id:
            raise JobStopped(f"job {job.id} stopped on request")

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self._current is not None and self._stopped_job_id == self._current.id:
            os.kill(os.getpid(), STOP_SIGNAL)


class ForkingJobWorker(EngineWorkerMixin, Worker):
    """Forks a work horse per job (isolation from crashing or leaking jobs)."""
