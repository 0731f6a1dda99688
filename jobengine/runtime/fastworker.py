"""The fast in-process worker: RQ's data model at a fraction of RQ's Redis round trips.

It writes what RQ's SimpleWorker writes (job hash and status, `rq:wip:` entries, Result streams,
registries, worker registration and heartbeats), so RQ's API, `rq info`, rq-dashboard and RQ's
abandoned-job cleanup read it unchanged. Per batch: `dequeue.lua` pops up to N jobs from the
highest non-empty lane and marks them started (atomic); they run in-process; each transition
goes with its history event and metrics (`bookkeeping.record`, into a `Recorder` that merges the
counters the jobs share) into one pending MULTI block (finished jobs' RQ bookkeeping: one
`finish.lua` call), sent with the next dequeue in ONE round trip. Batches grow while jobs are fast; a
watcher thread sends pending writes, puts held jobs back on their queue and writes RQ's
execution record once the running job is slow, and heartbeats. `promote.lua` moves due
scheduled jobs once a second, atomically. With every lane empty the worker blocks in BLPOP.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import redis
from rq.callbacks import execute_success_callback
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT as DATE_FORMAT
from rq.defaults import DEFAULT_LOGGING_FORMAT as LOG_FORMAT
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.registry import ScheduledJobRegistry
from rq.serializers import PickleSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.utils import import_attribute, now
from rq.worker import BaseWorker, DequeueStrategy, WorkerStatus

from jobengine import keys
from jobengine.config import Settings
from jobengine.ratelimit import RateLimiter
from jobengine.retry import RetryPolicy
from jobengine.runtime.allow import check_job_allowed
from jobengine.runtime.bookkeeping import Recorder, abandoned_job_recorder, record
from jobengine.runtime.controls import Controls
from jobengine.runtime.gate import QueueGate
from jobengine.runtime.jobinfo import (
    WORKER_TTL,
    ExcInfo,
    JobStopped,
    attempt_of,
    escape_log_text,
    job_type,
)
from jobengine.runtime.liveness import Liveness
from jobengine.runtime.outcomes import Held, Outcomes, stamp
from jobengine.runtime.recovery import SUSPECT, Recovery, heartbeat_every
from jobengine.runtime.transport import Block, Fenced, fenced_client
from jobengine.types import EventKind

log = logging.getLogger("jobengine.worker")

SCRIPTS = ("dequeue.lua", "finish.lua", "promote.lua")


@functools.lru_cache(maxsize=1024)
def _function(name: str) -> Any:
    return import_attribute(name)


def _cached_functions(job_class: type[Job]) -> type[Job]:
    """`job_class` whose `func` imports each function once per process instead of on every call."""

    class FastJob(job_class):  # type: ignore[valid-type,misc]
        @property
        def func(self) -> Any:
            name = self.func_name
            return _function(name) if name is not None and not self.instance else super().func

    return FastJob


def _script(name: str) -> str:
    return resources.files("jobengine.runtime").joinpath(name).read_text(encoding="utf-8")


@dataclass
class _Sent:
    """A block written to Redis whose replies are still to be read (see `_receive`)."""

    block: Block
    scripts: list[tuple[Any, ...]]  # the EVALSHAs at its end: (script name, numkeys, args...)
    tail: int  # how many of them the caller asked for
    ended: list[Job]
    finished: list[Job]
    after: list[tuple[str, str]]
    retried: list[Job]
    exc_strings: dict[str, str]
    life: int  # the worker's life it was sent in (see `_rejoin`)


@dataclass
class _Ask:
    """A dequeue sent (with the pending writes) whose reply is still to be read (see `_take`)."""

    sent: _Sent | None
    started: datetime
    dequeue: bool  # False: every lane was held by its rate limit, only the writes (and promote) went
    clock: float = 0.0  # monotonic time it was sent


class FastWorker(Controls, Outcomes, Liveness, BaseWorker):
    """In-process, batched, RQ-compatible worker with our retry policy, history and rate-limit gate."""

    max_batch = 32  #: most jobs taken in one dequeue (only while jobs stay under fast_job)
    background_batch = 8  #: most taken at once from the last of several lanes (see dequeue.lua)
    prefetch = True  #: a full batch of fast jobs asks for the next one half way (Redis works meanwhile)
    fast_job = 0.02  #: seconds; a job at least this long drops the batch to 1
    flush_after = 0.02  #: pending writes go out once the running job has run this long
    hold = 0.05  #: jobs in hand go back to their queue once the batch or running job is this old
    execution_after = 0.25  #: RQ execution record for jobs running longer than this
    heartbeat_every = 15.0  #: worker heartbeat period (the key lives worker_ttl + 60 s)
    promote_every = 1.0  #: scheduled-registry check period
    idle_block = 1  #: BLPOP timeout (seconds) when every lane is empty
    tick = 0.01  #: watcher thread period

    # set up per run by `_setup` (declared here for the type checker)
    _ahead: _Ask | None
    _batch: int
    _max_jobs: int | None
    _next_suspension_check: float
    _timeout: float
    _watcher: threading.Thread

    def __init__(self, *args: Any, worker_ttl: int | None = None, **kwargs: Any) -> None:
        """RQ's worker arguments. Without a `worker_ttl`, `configure` sets our WORKER_TTL (60 s)."""
        self._ttl_given = bool(worker_ttl or kwargs.get("default_worker_ttl"))
        super().__init__(*args, worker_ttl=worker_ttl, **kwargs)  # type: ignore[misc]
        escape_log_text(self.log)  # a job's error text may hold lone surrogates

    def configure(self, settings: Settings, policy: RetryPolicy, limiter: RateLimiter | None = None) -> None:
        self.settings, self.policy, self.gate = settings, policy, QueueGate(limiter, self.connection)
        if not self._ttl_given:  # a worker_ttl the user chose is kept
            self.worker_ttl = WORKER_TTL
        self.push_exc_handler(abandoned_job_recorder(self.connection, self.name))
        self.recovery = Recovery(self.connection, settings, policy, who=self.name, serializer=self.serializer)

    def before_run(self, job: Job) -> float | None:
        """The rate-limit gate, after dequeue and before the run: None runs `job`; a number of
        seconds defers it (scheduled again, status scheduled, not an attempt, `deferred` event)."""
        return self.gate.admit(job.origin, job.id)

    # ---- main loop --------------------------------------------------------------------------
    def work(self, burst: bool = False, logging_level: str | None = None, date_format: str = DATE_FORMAT,
             log_format: str = LOG_FORMAT, max_jobs: int | None = None, max_idle_time: int | None = None,
             with_scheduler: bool = False, dequeue_strategy: Any = None) -> bool:
        """Run until stopped (or until the lanes are empty with `burst`); True if any job ran."""
        self._setup(with_scheduler)
        self._max_jobs = max_jobs
        self._dequeue_strategy = dequeue_strategy or DequeueStrategy.DEFAULT
        if self._dequeue_strategy not in ("default", "random", "round_robin"):
            raise ValueError(f"Dequeue strategy {self._dequeue_strategy} is not allowed. "
                             "Use `default`, `random` or `round_robin`.")
        if self._dequeue_strategy == DequeueStrategy.ROUND_ROBIN:
            self.max_batch = 1  # one job per queue in turn, as RQ
        self.bootstrap(logging_level or "INFO", date_format, log_format)
        self._install_signal_handlers()
        self._watcher.start()
        done, idle_since, wait = 0, time.monotonic(), 1.0
        try:
            while not self._stop_requested and (max_jobs is None or done < max_jobs):
                limit = self._batch if max_jobs is None else max(1, min(self._batch, max_jobs - done))
                try:
                    ran = self._step(burst, limit)
                except Fenced:  # declared dead while cut off: its jobs were recovered elsewhere
                    self._rejoin()
                    continue
                except redis.exceptions.ConnectionError as exc:  # as RQ: wait for Redis with a growing pause
                    log.error("worker %s: Redis unreachable (%s); retrying in %.0f s", self.name, exc, wait)
                    time.sleep(wait)
                    wait = min(wait * 2, self.max_connection_wait_time)
                    continue
                wait = 1.0
                if ran is None:
                    break
                done += ran
                if ran:
                    idle_since = time.monotonic()
                elif max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                    break
        except StopRequested:
            pass
        except redis.exceptions.TimeoutError:
            log.error("worker %s: Redis timed out, quitting", self.name)
        finally:
            self._teardown()
        return bool(done)

    def _step(self, burst: bool, limit: int) -> int | None:
        """One turn: take a batch (or wait for one) and run it; jobs run, None to quit (burst)."""
        clock = time.monotonic()
        if clock >= self._next_suspension_check:
            self._next_suspension_check = clock + 1.0
            self.check_for_suspension(burst)
        if self.should_run_maintenance_tasks:
            self.clean_registries()
            self.clean_group_registries()
        with self._lock:
            ask, self._ahead = self._ahead, None
        batch = self._take(ask) if ask is not None else self._fetch(limit)
        if batch is None:
            if burst:  # dependents (or due jobs) the last block released run before the worker leaves
                more, self._more = self._more, False
                return 0 if more else None
            opens_in = self.gate.opens_in()
            if opens_in is not None and not self._open_keys():  # every lane is at its rate limit
                self._flush()
                time.sleep(max(0.01, min(opens_in, 1.0)))
                return 0
            claimed = self._block()
            batch = self._fetch(1, claimed) if claimed else []
        return self._run_batch(batch) if batch else 0

    def _setup(self, with_scheduler: bool) -> None:
        if not hasattr(self, "settings"):  # built by RQ (`rq worker -w ...FastWorker`): configuration from file/env
            settings = Settings.load()
            self.configure(settings, RetryPolicy.from_settings(settings))
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        self._pending = self.connection.pipeline()  # RQ's own bookkeeping calls (failures, deferrals...)
        self._recorder = Recorder()  # history events, metrics, counters: merged per block
        self._ended: list[Job] = []  # failed, stopped, repeating: written by RQ's helpers in the block
        self._finished: list[Job] = []  # finished: written by one finish.lua call (_finish_args)
        self._finish_args: tuple[Any, ...] = ()
        self._retried: list[Job] = []  # retried (our policy or RQ's Retry): their RQ rate-limit slot is released
        self._exc_strings: dict[str, str] = {}  # failed jobs' exc_string, for their `failed` webhooks
        self._rq_way: list[tuple[Held, Any]] = []  # outcomes left to RQ's own handlers (outcomes.py)
        self._more = False  # the last block released dependents: a burst worker looks again
        self._shutdown_noted = False
        self._after: list[tuple[str, str]] = []  # RQ rate-limited jobs come due: enqueued RQ's way
        self._in_hand: deque[Held] = deque()
        self._ahead = None  # the next batch, asked for while this one runs
        self._running: Held | None = None
        self._in_perform = False
        self._timeout = 0
        self._stop_ids: set[str] = set()
        self._batch = 1
        self._next_promote = 0.0 if with_scheduler else math.inf
        self._next_suspension_check = 0.0
        self._beat_every = heartbeat_every(max(3.0, self.settings.recovery_after), self.heartbeat_every)
        self._next_beat = time.monotonic() + self._beat_every
        self._held_key = keys.worker_held_key(self.name)
        self._fence_key = keys.worker_fence_key(self.name)
        self._fence_token = os.urandom(8).hex()
        self._fenced = threading.Event()  # a block was refused: this worker was declared dead
        self._life = 0
        self._marked: Held | None = None  # the job marked `running` in the held hash
        self._blocks = fenced_client(self.connection, self._fence_key, lambda: self._fence_token)
        self._join()
        self._by_name = {q.name: q for q in self.queues}
        self._shas = {name: self.connection.script_load(_script(name)) for name in SCRIPTS}
        self._job_type = _cached_functions(self.job_class)
        jobs, queues = self.job_class.redis_job_namespace_prefix, self.queue_class.redis_queue_namespace_prefix
        self._dequeue_prefixes = (jobs, keys.rq_started_key(""), queues)  # the Lua scripts' key prefixes
        self._finish_prefixes = (jobs, keys.rq_results_key(""), keys.rq_finished_key(""), keys.rq_started_key(""))
        self._promote_prefixes = (jobs, keys.rq_scheduled_key(""), keys.rq_scheduler_lock_key(""))
        self._ser = None if self.serializer is PickleSerializer else self.serializer  # skips RQ's slow re-check
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name=f"fastworker-{self.name[:8]}", daemon=True)

    def _queue(self, name: str) -> Queue:
        return self._by_name.get(name) or self._by_name.setdefault(name, self.queue_class(
            name, connection=self.connection, serializer=self.serializer))

    def _open_keys(self) -> list[str]:
        """The keys of the lanes the gate lets this worker take from now, in priority order."""
        closed = self.gate.closed()
        return [q.key for q in self._ordered_queues if q.name not in closed]

    # ---- dequeue ----------------------------------------------------------------------------
    def _fetch(self, limit: int, claimed: tuple[str, str] | None = None) -> list[Held] | None:
        """Flush pending writes, promote due jobs (once a second) and take up to `limit` jobs
        from the first non-empty open lane, in ONE round trip. None when every lane is empty."""
        try:
            return self._take(self._ask(limit, claimed))
        except Fenced:
            if claimed:  # popped by BLPOP but never taken: back where it was
                self.connection.lpush(claimed[0], claimed[1])
            raise

    def _ask(self, limit: int, claimed: tuple[str, str] | None = None) -> _Ask:
        """Send `_fetch`'s block without waiting for its reply (`_take` reads it)."""
        keys = [claimed[0]] if claimed else self._open_keys()
        scripts: list[tuple[Any, ...]] = []
        clock, started = time.monotonic(), now()
        if clock >= self._next_promote:
            self._next_promote = clock + self.promote_every
            queues = [part for q in self.queues for part in (q.name, q.key)]
            scripts.append(("promote.lua", 0, int(time.time()), 1000, stamp(started), *self._promote_prefixes,
                            *queues))
        if keys:
            scripts.append(("dequeue.lua", len(keys), *keys, limit, self.name, stamp(started),
                            f"{time.time():.6f}", os.urandom(12).hex(), claimed[1] if claimed else "",
                            *self._dequeue_prefixes, self._held_key,
                            self.background_batch if self._dequeue_strategy == DequeueStrategy.DEFAULT else limit))
        return _Ask(self._send(scripts), started, bool(keys), clock)

    def _take(self, ask: _Ask) -> list[Held] | None:
        replies = self._receive(ask.sent) if ask.sent is not None else []
        if replies and replies[-1] and time.monotonic() - ask.clock > self.settings.recovery_after / 3:
            self._check_fence()  # a reply this late (a cut link?): were its jobs recovered meanwhile?
        if replies and ask.sent is not None and ask.sent.scripts[-len(replies)][0] == "promote.lua":
            with self._lock:
                self._after += [tuple(s.decode().split(" ", 1)) for s in replies[0][1]]
        return self._parse(replies[-1], ask.started) if ask.dequeue and replies and replies[-1] else None

    def _parse(self, tokens: list[bytes], started: datetime) -> list[Held]:
        """dequeue.lua's reply: the queue, then per job its id, execution id, field count, fields."""
        queue, held, i = tokens[0].decode(), [], 1
        while i < len(tokens):
            job_id, exec_id, n = tokens[i].decode(), tokens[i + 1].decode(), 2 * int(tokens[i + 2])
            raw, i = tokens[i + 3:i + 3 + n], i + 3 + n
            job = self._job_type(job_id, connection=self.connection, serializer=self._ser)
            fields = dict(zip(raw[::2], raw[1::2], strict=True))
            requeued = b"worker_name" in fields and b"started_at" not in fields  # RQ's requeue clears the run
            stamps = fields.pop(b"created_at", None), fields.pop(b"enqueued_at", None)  # RQ parses them slowly
            job.restore(fields)
            job.created_at = datetime.fromisoformat(stamps[0].decode()) if stamps[0] else job.created_at
            job.enqueued_at = datetime.fromisoformat(stamps[1].decode()) if stamps[1] else None
            job.worker_name, job.started_at, job.last_heartbeat = self.name, started, started
            job._status = JobStatus.STARTED
            held.append(Held(job, queue, exec_id, requeued=requeued))
        if self._dequeue_strategy != DequeueStrategy.DEFAULT and queue in self._by_name:
            self.reorder_queues(self._by_name[queue])
        return held

    def _block(self) -> tuple[str, str] | None:
        """Every lane empty: report idle and wait in BLPOP (lanes in priority order) for a job."""
        if self._state != WorkerStatus.IDLE:
            self._flush()
            self.set_state(WorkerStatus.IDLE)
        keys = self._open_keys()
        got: Any = self.connection.blpop(keys, timeout=self.idle_block) if keys else None
        return (got[0].decode(), got[1].decode()) if got else None

    # ---- running a batch --------------------------------------------------------------------
    def _run_batch(self, batch: list[Held]) -> int:
        with self._lock:
            if self._state != WorkerStatus.BUSY:
                self._state = WorkerStatus.BUSY
                self._pending.hset(self.key, "state", WorkerStatus.BUSY.value)
            self._in_hand.extend(batch)
        taken, ran, fast = time.monotonic(), 0, True
        full = self.background_batch if len(self.queues) > 1 and batch[0].queue == self.queues[-1].name \
            else self.max_batch  # a batch of the background lane is capped (dequeue.lua)
        ahead = self.prefetch and self._max_jobs is None and self._batch == self.max_batch and len(batch) == full
        while True:
            with self._lock:
                if not self._in_hand or self._stop_requested or self._fenced.is_set() \
                        or (ran and time.monotonic() - taken > self.hold):
                    break  # what is left goes back to the front of its queue
                item = self._in_hand.popleft()
            duration = self._execute(item)
            ran += duration is not None
            fast = fast and duration is not None and duration < self.fast_job
            if ahead and fast and ran == len(batch) // 2:  # Redis takes the next batch while this one ends
                ask = self._ask(self.max_batch)
                with self._lock:
                    self._ahead = ask
        self._release_in_hand()
        self._batch = min(self._batch * 2, self.max_batch) if fast else 1
        return ran

    def _execute(self, item: Held) -> float | None:
        """Run one job; its duration, or None when the gate deferred it."""
        job = item.job
        delay = None if job.id in self._stop_ids else self._gate(job)
        if delay is not None:
            self._defer(item, delay)
            return None
        if job.meta.get("deferrals") and job.enqueue_at_front:
            job.enqueue_at_front, item.front_fix = False, True
        job.started_at, job.ended_at = now(), None  # ended_at may hold an earlier attempt's end
        item.since = item.beat = time.monotonic()
        with self._lock:
            self._running = item
            if item.requeued:  # a failure put back through RQ's API: it leaves our failed list
                record(self._recorder, EventKind.REQUEUED, job.id, item.queue, at=job.enqueued_at or job.started_at,
                       type=job_type(job), message="requeued through RQ")
            record(self._recorder, EventKind.STARTED, job.id, item.queue, at=job.started_at, type=job_type(job),
                   attempt=attempt_of(job), worker=self.name)
            item.started_entry = (self._recorder, self._recorder.last_entry)
            suspect = bool(job.meta.get(SUSPECT))
            if suspect:  # its last worker died within `hold` of taking it: mark it before it runs
                self._pending.hset(self._held_key, "running", item.member)
                self._marked = item
        if suspect:
            self._flush()
        exc_info: ExcInfo | None = None
        value = None
        try:
            self._in_perform = True
            if job.id in self._stop_ids or self._stopped_job_id == job.id:
                raise JobStopped(f"job {job.id} stopped on request")
            check_job_allowed(job, self.settings)  # [dispatch] allow: refused jobs fail unrun
            timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
            if self.death_penalty_class is UnixSignalDeathPenalty:  # its handler is installed once
                self._timeout = timeout
                signal.alarm(math.ceil(timeout) if timeout > 0 else 0)
                try:
                    value = job.perform()
                finally:
                    signal.alarm(0)
            else:
                with self.death_penalty_class(timeout, JobTimeoutException, job_id=job.id):
                    value = job.perform()
            self._in_perform = False
            job.ended_at = now()
            if not isinstance(value, Retry):  # as RQ: a returned Retry runs no success callback
                job._status = JobStatus.FINISHED  # what the callback reads, as in RQ
                execute_success_callback(job, self.death_penalty_class, value)
        except BaseException:  # noqa: B036 - the job's failure (JobStopped, SystemExit included) is recorded
            exc_info = sys.exc_info()
        finally:
            self._in_perform = False
        job.ended_at = job.ended_at or now()
        with self._lock:
            self._running = None
            self._stop_ids.discard(job.id)
            if self._marked is item:
                self._pending.hdel(self._held_key, "running")
                self._marked = None
            if exc_info is None:
                self._succeeded(item, value)
            else:
                self._failed(item, exc_info)
        if self._rq_way:
            self._settle_rq_way()
        duration = (job.ended_at - job.started_at).total_seconds()
        if exc_info is not None and isinstance(exc_info[1], SystemExit | KeyboardInterrupt):
            raise exc_info[1]
        return duration

    def _gate(self, job: Job) -> float | None:
        """before_run, waiting in hand for a slot that opens within IN_HAND_WAIT (pending writes
        go out first: finished jobs' bookkeeping does not wait for the slot)."""
        delay = self.before_run(job)
        if delay is None:
            return None
        return self.gate.wait_in_hand(delay, lambda: self.before_run(job), self._flush)

    def _release_in_hand(self, queue: str | None = None, ahead: bool = False) -> None:
        """Jobs taken but not run (of `queue`, or all; with `ahead`, the batch asked for ahead
        too) go back to the front of their queue, in order, status queued."""
        if ahead:
            with self._lock:
                ask, self._ahead = self._ahead, None
            taken = self._take(ask) if ask is not None else None
            with self._lock:
                self._in_hand.extend(taken or ())
        with self._lock:
            back = [h for h in self._in_hand if queue is None or h.queue == queue]
            if not back:
                return
            self._in_hand = deque(h for h in self._in_hand if queue is not None and h.queue != queue)
            for h in back:
                self._pending.hset(h.job.key, mapping={"status": JobStatus.QUEUED.value, "started_at": "",
                                                       "worker_name": "", "last_heartbeat": ""})
                self._pending.zrem(keys.rq_started_key(h.queue), h.member)
            self._pending.hdel(self._held_key, *[h.member for h in back])
            for name in dict.fromkeys(h.queue for h in back):
                self._pending.lpush(self._queue(name).key, *[h.job.id for h in reversed(back) if h.queue == name])
        self._flush()

    # ---- the pending block ------------------------------------------------------------------
    def _flush(self, tail: Sequence[tuple[Any, ...]] = ()) -> list[Any]:
        """Send the pending writes, the batch's finish.lua call and `tail` (scripts: name,
        numkeys, args...) in ONE MULTI round trip; returns the replies of `tail`."""
        sent = self._send(tail)
        return self._receive(sent) if sent is not None else []

    def _send(self, tail: Sequence[tuple[Any, ...]] = ()) -> _Sent | None:
        """Write the pending block (and `tail`) to Redis without waiting for its replies."""
        with self._flush_lock:  # blocks leave in the order their writes were made
            if self._fenced.is_set():
                raise Fenced(f"worker {self.name} was declared dead; it sends nothing until it rejoins")
            with self._lock:
                pipe, self._pending = self._pending, self.connection.pipeline()
                recorder, self._recorder = self._recorder, Recorder()
                ended, finished, args = self._ended, self._finished, self._finish_args
                self._ended, self._finished, self._finish_args = [], [], ()
                retried, self._retried = self._retried, []
                exc_strings, self._exc_strings = self._exc_strings, {}
                after, self._after = self._after, []
            scripts = ([("finish.lua", 0, self.name, int(time.time()), *self._finish_prefixes, *args)]
                       if finished else []) + list(tail)
            if not pipe.command_stack and not len(recorder) and not scripts:
                if retried:  # their writes went with an earlier block (RQ's handlers)
                    self._release_slots(retried)
                return None
            commands = [args for args, _ in pipe.command_stack] + recorder.commands()
            if finished:  # out of the held hash (finish.lua takes 10 values per job: id, queue, execution id...)
                members = [f"{i}:{e}" for i, e in zip(args[::10], args[2::10], strict=True)]
                commands.append(("HDEL", self._held_key, *members))
            if ended:
                commands.append(("EXISTS", *[j.dependents_key for j in ended]))
            commands += [("EVALSHA", self._shas[name], *rest) for name, *rest in scripts]
            try:
                block = Block(self._blocks, commands, watch=self._fence_key)
            except Fenced:  # a new connection found the fence gone: nothing of this block was sent
                self._discarded(finished + ended)
                self._fenced.set()
                raise
            return _Sent(block, scripts, len(tail), ended, finished, after, retried, exc_strings,
                         self._life)

    def _receive(self, sent: _Sent) -> list[Any]:
        """Read a sent block's replies, then do what RQ does once an outcome is committed;
        returns the replies of its `tail`."""
        try:
            replies, scripts = sent.block.replies(), sent.scripts
        except redis.exceptions.WatchError:
            self._refused(sent)
            raise Fenced(f"worker {self.name} was declared dead: its block was refused") from None
        ours = len(replies) - len(scripts)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies[ours:]):  # SCRIPT FLUSH, restart
            self._shas = {n: self.connection.script_load(_script(n)) for n in SCRIPTS}
            replies[ours:] = [self.connection.evalsha(self._shas[n], *rest)
                              if isinstance(r, redis.exceptions.NoScriptError) else r
                              for (n, *rest), r in zip(scripts, replies[ours:], strict=True)]
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            raise errors[0]
        ended, finished = sent.ended, sent.finished
        if ended and replies[ours - 1]:  # as RQ: a failed job's dependents once its failure is committed
            for job in ended:
                self._enqueue_dependents(job)
        if finished and replies[ours]:  # finish.lua: the finished jobs with dependents, and their status before
            before = dict(zip(replies[ours][::2], replies[ours][1::2], strict=True))
            for job in finished:
                status = before.get(job.id.encode())
                # canceled (or stopped) while it ran: its dependents stay deferred, as with RQ's worker
                if status is not None and status not in (b"canceled", b"stopped"):
                    self._enqueue_dependents(job, refresh=False)
        for job in ended + finished:
            if job.webhooks and job.get_status(refresh=False) != JobStatus.STOPPED:
                job.send_webhooks(job.get_status(refresh=False), exc_string=sent.exc_strings.get(job.id))
        self._release_slots(ended + finished + sent.retried)
        for name, job_id in sent.after:  # RQ rate-limited jobs came due: RQ's own enqueue takes their slot
            job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
            with self.connection.pipeline() as p:
                ScheduledJobRegistry(queue=self._queue(name)).remove(job.id, pipeline=p)
                self._queue(name)._enqueue_rate_limited_job(job, pipeline=p, at_front=job.should_enqueue_at_front())
                p.execute()
        return replies[len(replies) - sent.tail:]

    # ---- watcher thread ---------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._closing.wait(self.tick):
            try:
                self._watch_once(time.monotonic())
            except Exception as exc:  # keep watching: the main loop reports Redis trouble
                log.warning("worker %s watcher: %s", self.name, exc)

    def _watch_once(self, clock: float) -> None:
        if self._shutdown_requested_date is not None and not self._shutdown_noted:  # as RQ, in Redis
            self._shutdown_noted = True
            self.set_shutdown_requested_date()
        if clock >= self._next_beat:
            self._next_beat = clock + self._beat_every
            self._beat()
        self.recovery.maybe_run(clock)
        item = self._running
        if item is None:
            return
        age = clock - item.since
        if age >= self.hold and self._marked is not item:
            self._mark(item)  # sent with the release below, or the flush after it
        if age >= self.hold and (self._in_hand or self._ahead is not None):
            self._release_in_hand(ahead=True)
        if age >= self.flush_after and (len(self._pending) or len(self._recorder)):
            self._flush()
        if age >= self.execution_after and item.execution is None:
            self._record_execution(item)
        if item.job.timeout == -1 and clock - item.beat > 60:  # no timeout: keep the started entry alive
            item.beat = clock
            self.connection.zadd(keys.rq_started_key(item.queue), {item.member: time.time() + 420}, xx=True)

    def _record_execution(self, item: Held) -> None:
        """RQ's execution record, for a job that runs long enough to be watched (and stopped) by id."""
        with self._lock, self.connection.pipeline() as pipe:
            if self._running is not item or item.execution is not None:
                return
            ttl = self.get_heartbeat_ttl(item.job)
            execution = Execution(item.exec_id, item.job.id, self.connection, worker_name=self.name)
            execution.created_at = execution.last_heartbeat = item.job.started_at or now()
            execution.save(ttl, pipeline=pipe)
            ExecutionRegistry(item.job.id, self.connection).add(execution, ttl, pipe)
            pipe.sadd(execution.worker_executions_key, execution.composite_key)
            pipe.expire(execution.worker_executions_key, ttl + 60)
            pipe.execute()
            item.execution = self.executions[execution.id] = execution

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """As RQ's SimpleWorker: the job's timeout + 60 s (420 s for jobs without timeout)."""
        return 420 if job.timeout == -1 else int(job.timeout or 420) + 60

    def _teardown(self) -> None:
        try:
            self._release_in_hand(ahead=True)
            with self._lock:  # as RQ's worker after its last job: idle (then dead)
                self._state = WorkerStatus.IDLE
                self._pending.hset(self.key, "state", WorkerStatus.IDLE.value)
                if self._shutdown_requested_date is not None and not self._shutdown_noted:
                    self._shutdown_noted = True
                    self._pending.hset(self.key, "shutdown_requested_date", stamp(self._shutdown_requested_date))
            self._flush()
            done = True
        except redis.RedisError as exc:
            log.error("worker %s could not write its last jobs' bookkeeping: %s", self.name, exc)
            done = False
        self._closing.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        if done:  # nothing held: nothing left for recovery (the watcher's heartbeat has stopped)
            self._leave()
        self.teardown()
