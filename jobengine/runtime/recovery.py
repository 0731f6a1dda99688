"""Worker death: a dead fast worker's jobs go back to their queues within `recovery_after`.

Every fast worker keeps what it holds in Redis as it goes (`dequeue.lua` writes the batch into
the worker's held hash; the job it runs past `hold` is marked `running`) and refreshes its alive
key (TTL `recovery_after`) with each heartbeat. A worker whose alive key expired is dead; any live
worker (and `jobtui reconcile`, via `recover`) then, under one Redis lock:

- puts every job it held back at the FRONT of its queue, in order, attempts unchanged: the jobs it
  had not started, and the ones that ran but whose completion died with it (they run again:
  at-least-once; their log says so);
- hands the job it was running to the abandoned strategy (`[retry.abandoned]`: straight back,
  and the third abandonment is a final failure, as a poison job);
- removes its started-registry entries, execution records and RQ registration, so RQ's own sweep
  (600 s later) finds nothing, and deletes its fence key so a block it sent before it knew (a
  cut-off host) is refused (see FastWorker);
- records an event in our history for every job.

It also watches the started-registry entries about to expire: one RQ's own cleanup (`rq info`,
rq-dashboard, a worker's maintenance) then fails as abandoned gets its `failed` event in our
history too, once (whoever records an abandoned run first sets `abandoned_recorded_key`).

A worker killed within `hold` (50 ms) of starting its job leaves no `running` mark: its held jobs
are UNKNOWN (not started, or run with the completion lost), all go back, none counts as an
abandonment, and each is marked suspect: a suspect job is marked before it runs, so if it kills
its next worker that abandonment counts. A job that kills its worker at once is thus failed on its
fourth kill, not its third.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from rq.exceptions import AbandonedJobError
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.queue import Queue
from rq.serializers import resolve_serializer
from rq.utils import now as rq_now
from rq.utils import utcformat
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from jobengine import keys
from jobengine.config import Settings
from jobengine.retry import RetryPolicy
from jobengine.runtime import records
from jobengine.runtime.bookkeeping import record, record_abandoned_once

log = logging.getLogger("jobengine.recovery")

#: job.meta keys: abandonments so far, and "taken by a worker that died within `hold`".
ABANDONED, SUSPECT = "abandoned", "suspect"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def check_every(recovery_after: float) -> float:
    """How often workers look for dead ones: a fifth of the window, between 0.5 and 5 s."""
    return max(0.5, min(5.0, recovery_after / 5))


def heartbeat_every(recovery_after: float, rq_every: float = 15.0) -> float:
    """A worker's heartbeat period: three beats per window at least (RQ's own period at most)."""
    return max(0.2, min(rq_every, recovery_after / 3))


@dataclass
class RecoveryReport:
    """What one recovery run did."""

    workers: list[str] = field(default_factory=list)  #: dead workers recovered
    requeued: int = 0  #: held jobs back at the front of their queue (lost completions included)
    lost: int = 0  #: of those, jobs that had run (their completion died with the worker)
    retried: int = 0  #: running jobs retried by the abandoned strategy
    failed: int = 0  #: running jobs failed for good (killed their worker too often)
    swept: int = 0  #: abandoned runs failed by RQ's own cleanup, recorded in our history
    locked: bool = True  #: False: another process was recovering, nothing was done

    def add(self, other: RecoveryReport) -> None:
        self.workers += other.workers
        self.requeued += other.requeued
        self.lost += other.lost
        self.retried += other.retried
        self.failed += other.failed
        self.swept += other.swept

    @property
    def empty(self) -> bool:
        return not (self.workers or self.swept)


@dataclass(frozen=True)
class _Held:
    member: str
    queue: str
    order: tuple[float, int]

    @property
    def job_id(self) -> str:
        return self.member.rpartition(":")[0]


def parse_held(raw: Any) -> tuple[list[_Held], str | None]:
    """A held hash: its jobs in the order the worker runs them, and the `running` member."""
    held, running = [], None
    for k, v in raw.items():
        name, value = _text(k), _text(v)
        if name == "running":
            running = value
        elif ":" in name:
            at, i, queue = value.split(" ", 2)
            held.append(_Held(name, queue, (float(at), int(i))))
    held.sort(key=lambda h: h.order)
    return held, running


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _abandoned_failure(status: bytes | None, results: Any) -> bool:
    """A job failed by RQ's cleanup: status failed, its latest Result (XREVRANGE ... COUNT 1) a
    failure whose text names AbandonedJobError."""
    if status != b"failed" or not results:
        return False
    raw = results[0][1].get(b"exc_string")
    if not raw:
        return False
    try:
        text = zlib.decompress(b64decode(raw)).decode("utf-8", "replace")
    except (ValueError, zlib.error):
        text = raw.decode("utf-8", "replace")
    return "AbandonedJobError" in text


class Recovery:
    """Finds dead workers and recovers their jobs; `maybe_run` is called by every live worker."""

    def __init__(self, connection: redis.Redis, settings: Settings, policy: RetryPolicy, *, who: str,
                 serializer: Any = None) -> None:
        self.connection, self.settings, self.policy, self.who = connection, settings, policy, who
        self.serializer = resolve_serializer(serializer)
        self.every = check_every(settings.recovery_after)
        self._next = 0.0
        self._release = connection.register_script(_RELEASE)

    # ---- when ----------------------------------------------------------------------------
    def maybe_run(self, clock: float | None = None) -> RecoveryReport | None:
        """Every `every` seconds: recover dead workers and record RQ's sweeps (None when not due)."""
        clock = time.monotonic() if clock is None else clock
        if clock < self._next:
            return None
        self._next = clock + self.every
        report = self.run()
        if report.workers:
            log.warning("recovered %d dead worker(s) %s: %d job(s) back on their queues (%d had run), "
                        "%d abandoned run(s) retried, %d failed for good", len(report.workers),
                        ", ".join(report.workers), report.requeued, report.lost, report.retried, report.failed)
        return report

    def dead_workers(self) -> list[str]:
        """Registered fast workers whose alive key expired."""
        names = sorted(_text(n) for n in self.connection.smembers(keys.WORKERS))
        if not names:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(keys.worker_alive_key(name))
            alive = pipe.execute()
        return [n for n, a in zip(names, alive, strict=True) if not a]

    # ---- running -------------------------------------------------------------------------
    def run(self, names: Iterable[str] | None = None) -> RecoveryReport:
        """Under the lock: recover `names` (default: every dead worker), then record RQ's sweeps."""
        token = os.urandom(8).hex()
        # The lock lives one check period: a holder killed while it held it (its `finally` never
        # ran) delays the others by one check at most. Recovering a worker is optimistic (WATCH),
        # so a run outliving its lock is only duplicated effort, never a double recovery.
        if not self.connection.set(keys.RECOVERY_LOCK, token, nx=True, px=max(1, int(self.every * 1000))):
            return RecoveryReport(locked=False)
        report = RecoveryReport()
        try:
            for name in (self.dead_workers() if names is None else names):
                report.add(self.recover_worker(name))
            report.swept += self._sweeps()
        finally:
            self._release(keys=[keys.RECOVERY_LOCK], args=[token])
        return report

    def recover_worker(self, name: str) -> RecoveryReport:
        """Recover one worker, if it is dead (optimistic: its held hash, alive key and jobs are
        WATCHed, so a worker that comes back or a late block of it makes this start over)."""
        held_key, alive_key = keys.worker_held_key(name), keys.worker_alive_key(name)
        for _ in range(5):
            with self.connection.pipeline() as pipe:
                try:
                    pipe.watch(held_key, alive_key)
                    if pipe.exists(alive_key):
                        return RecoveryReport()
                    held, running = parse_held(pipe.hgetall(held_key))
                    if held:
                        pipe.watch(*{keys.rq_job_key(h.job_id) for h in held})
                    return self._recover(pipe, name, held, running)
                except redis.WatchError:
                    continue
        log.warning("worker %s: recovery gave up after 5 tries (its state kept changing)", name)
        return RecoveryReport()

    def _recover(self, pipe: Any, name: str, held: list[_Held], running: str | None) -> RecoveryReport:
        report = RecoveryReport(workers=[name])
        with self.connection.pipeline(transaction=False) as read:
            for h in held:
                read.zscore(keys.rq_started_key(h.queue), h.member)
                read.hmget(keys.rq_job_key(h.job_id), "status", "worker_name", "started_at")
                read.xrevrange(keys.rq_results_key(h.job_id), count=1)
            read.hget(keys.rq_worker_key(name), "queues")
            read.smembers(keys.rq_worker_executions_key(name))
            replies = read.execute()
        states = replies[:-2]
        rq_queues, executions = replies[-2], replies[-1]
        live: list[_Held] = []
        swept: list[tuple[_Held, bytes | None]] = []
        for i, h in enumerate(held):
            score, (status, worker, started), results = states[3 * i:3 * i + 3]
            if score is not None and status == b"started" and (worker or b"").decode() == name:
                live.append(h)
            elif score is None and _abandoned_failure(status, results):
                swept.append((h, started))  # RQ's sweep got there first: record it in our history
        jobs = {j.id: j for j in Job.fetch_many([h.job_id for h in live], self.connection, self.serializer) if j}
        live = [h for h in live if h.job_id in jobs]
        members = [h.member for h in live]
        at = members.index(running) if running in members else None
        pipe.multi()
        after: list[Job] = []
        fronts: dict[str, list[str]] = {}
        for i, h in enumerate(live):
            job = jobs[h.job_id]
            if at is None or i != at:
                how = records.UNKNOWN if at is None else records.LOST if i < at else records.HELD
                self._requeue(pipe, job, h, name, how, fronts)
                report.requeued += 1
                report.lost += how == records.LOST
            elif self._abandoned(pipe, job, h, name, fronts):
                report.retried += 1
            else:
                report.failed += 1
                after.append(job)
        for queue, ids in fronts.items():  # each queue's jobs at its front, in the order they were taken
            pipe.lpush(keys.rq_queue_key(queue), *reversed(ids))
        for h in live:
            pipe.zrem(keys.rq_started_key(h.queue), h.member)
        self._unregister(pipe, name, rq_queues, executions)
        pipe.execute()
        for job in after:  # as RQ's sweep: a final failure releases its dependents (after the commit)
            Queue(job.origin, connection=self.connection, serializer=self.serializer).enqueue_dependents(job)
        for h, started in swept:
            report.swept += self._record_sweep(h.job_id, h.queue, started, name)
        return report

    def _requeue(self, pipe: Any, job: Job, h: _Held, name: str, how: str, fronts: dict[str, list[str]]) -> None:
        mapping: dict[str, Any] = {"status": JobStatus.QUEUED.value, "started_at": "", "worker_name": "",
                                   "last_heartbeat": ""}
        if how == records.UNKNOWN and not job.meta.get(SUSPECT):
            job.meta[SUSPECT] = 1
            mapping["meta"] = self.serializer.dumps(job.meta)
        pipe.hset(job.key, mapping=mapping)
        fronts.setdefault(h.queue, []).append(job.id)
        entry = records.recovered(job, name, how, self.who)
        record(pipe, entry.kind, job.id, h.queue, **entry.fields)
        log.info(*entry.log)

    def _abandoned(self, pipe: Any, job: Job, h: _Held, name: str, fronts: dict[str, list[str]]) -> bool:
        """The running job, by the abandoned strategy; True when it runs again."""
        strikes = int(job.meta.get(ABANDONED, 0)) + 1
        decision = self.policy.abandoned(strikes)
        entry = records.abandoned_run(job, name, decision, strikes, self.who)
        job.meta[ABANDONED] = strikes
        pipe.hset(job.key, "meta", self.serializer.dumps(job.meta))
        queue = Queue(h.queue, connection=self.connection, serializer=self.serializer)
        if decision.retry:
            job.number_of_retries = records.attempt_of(job)
            pipe.hset(job.key, mapping={"number_of_retries": job.number_of_retries, "started_at": "",
                                        "worker_name": "", "last_heartbeat": ""})
            if decision.delay:
                queue.schedule_job(job, rq_now() + timedelta(seconds=decision.delay), pipeline=pipe)
            else:
                pipe.hset(job.key, "status", JobStatus.QUEUED.value)
                fronts.setdefault(h.queue, []).append(job.id)
        else:
            if job.started_at is not None:  # recorded here: RQ's sweep watch must not record it again
                pipe.set(keys.abandoned_recorded_key(job.id, utcformat(job.started_at)), 1, ex=7 * 24 * 3600)
            job.ended_at = rq_now()
            record_job_failure(job, f"{AbandonedJobError.__name__}: {entry.fields['error_message']}", pipe)
        record(pipe, entry.kind, job.id, h.queue, **entry.fields)
        log.warning(*entry.log)
        return decision.retry

    def _unregister(self, pipe: Any, name: str, rq_queues: bytes | None, executions: set[bytes]) -> None:
        """The dead worker's execution records, RQ registration and our keys."""
        for composite in executions:
            job_id, _, exec_id = composite.decode().rpartition(":")
            execution = Execution(exec_id, job_id, self.connection)
            pipe.delete(execution.key)
            pipe.zrem(ExecutionRegistry(job_id, self.connection).key, exec_id)
        worker_key = keys.rq_worker_key(name)
        pipe.srem(keys.RQ_WORKERS, worker_key)
        for queue in (rq_queues or b"").decode().split(","):
            if queue:
                pipe.srem(WORKERS_BY_QUEUE_KEY % queue, worker_key)
        pipe.delete(worker_key, keys.rq_worker_executions_key(name), keys.worker_held_key(name),
                    keys.worker_fence_key(name), keys.worker_alive_key(name))
        pipe.srem(keys.WORKERS, name)

    # ---- RQ's own sweep --------------------------------------------------------------------
    def _sweeps(self) -> int:
        """Record the abandoned runs RQ's own cleanup failed since the last look: the entries of
        the started registries due to expire soon are watched; one that vanished with its job
        failed by AbandonedJobError gets its event (once)."""
        queues = list(dict.fromkeys([*self.settings.queues,
                                     *(keys.rq_queue_name(q) for q in self.connection.smembers(keys.RQ_QUEUES))]))
        horizon = time.time() + 3 * self.every + 5
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.RECOVERY_WATCH)
            for q in queues:
                pipe.zrangebyscore(keys.rq_started_key(q), "-inf", horizon)
            replies = pipe.execute()
        watched = {m.decode(): q.decode() for m, q in replies[0].items()}
        soon = {m.decode(): q for q, members in zip(queues, replies[1:], strict=True) for m in members}
        gone = [(m, q) for m, q in watched.items() if m not in soon]
        swept = 0
        if gone:
            with self.connection.pipeline(transaction=False) as pipe:
                for m, q in gone:
                    job_id = m.rpartition(":")[0]
                    pipe.zscore(keys.rq_started_key(q), m)
                    pipe.hmget(keys.rq_job_key(job_id), "status", "started_at", "worker_name")
                    pipe.xrevrange(keys.rq_results_key(job_id), count=1)
                replies = pipe.execute()
            for i, (m, q) in enumerate(gone):
                score, (status, started, worker), results = replies[3 * i:3 * i + 3]
                if score is None and _abandoned_failure(status, results):
                    swept += self._record_sweep(m.rpartition(":")[0], q, started, (worker or b"").decode())
        if watched != soon:
            with self.connection.pipeline() as pipe:
                pipe.delete(keys.RECOVERY_WATCH)
                if soon:
                    pipe.hset(keys.RECOVERY_WATCH, mapping=soon)
                pipe.execute()
        return swept

    def _record_sweep(self, job_id: str, queue: str, started: bytes | None, worker: str) -> int:
        job = Job.fetch_many([job_id], self.connection, self.serializer)[0]
        if job is None:
            return 0
        job.origin = job.origin or queue
        job.worker_name = job.worker_name or worker
        return int(record_abandoned_once(self.connection, job, (started or b"").decode(), self.who))


def recover(connection: redis.Redis, settings: Settings, policy: RetryPolicy | None = None, *,
            who: str = "reconcile") -> RecoveryReport:
    """Recover every dead worker now and record RQ's sweeps (for `jobtui reconcile`)."""
    return Recovery(connection, settings, policy or RetryPolicy.from_settings(settings), who=who).run()
