"""Reconcile: put back the jobs PostgreSQL holds in flight that Redis lost, each exactly once.

    reconciler = Reconciler(engine.connection, engine.store, engine.settings)
    if reconciler.detect_reset().reset:
        report = reconciler.run(progress=lambda done, total: ...)

A job PostgreSQL holds as queued, scheduled or processing whose Redis job hash no longer exists
is re-created with the same id from its `jobs` row (`payload`, `options`, written by dispatch):
the hash dispatch writes, pushed on its queue (queued ones, and processing ones: they ran on a
worker Redis forgot, and run again as the same attempt), or put in the scheduled registry at its
due time (pushed at once when due). `reconcile.lua` re-creates a job only if its hash is absent
and this Redis never saw it re-created, so concurrent and repeated runs push no job twice. Each
re-created job gets a history event saying so; each run (not a dry run) one audit row.

Left alone, and counted: jobs Redis still has; jobs dispatched less than `grace` seconds ago
(their dispatch may not have reached Redis yet); jobs with events still waiting in the history
stream (PostgreSQL is behind: the job may have finished); rows without a payload (plain RQ
clients, or dispatched while PostgreSQL was down): they cannot be re-created.

Jobs whose hash says finished/failed/canceled/stopped while PostgreSQL holds them in flight are
reported `stale`. Most have their final event on its way (in the history stream, or parked as a
dead letter); for the others (canceled through RQ's own API or rq-dashboard, run by a plain RQ
worker) a run records the outcome RQ's hash shows as a history event, once: a Redis set of the
ends recorded keeps concurrent runs from writing one twice, a later run finds the event in the
stream and skips the job, and once applied PostgreSQL no longer holds the job in flight. An end
younger than `grace` seconds waits for the next run (an operator's cancel writes RQ's status a
moment before its event).

Reset detection: a random token in Redis (`keys.REDIS_EPOCH`) is recorded in PostgreSQL by the
first engine that sees both. PostgreSQL holding an epoch that Redis lacks (or holds another of)
means Redis lost its data: `detect_reset()` says so until a reconcile that left nothing behind
records the new epoch.
"""

from __future__ import annotations

import calendar
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.utils import utcformat, utcparse

from jobengine import keys
from jobengine.config import Settings
from jobengine.dispatch import rq_job_hash
from jobengine.errors import StoreUnavailable
from jobengine.history import add_event, event_fields
from jobengine.models import RestorableJob
from jobengine.operations import actor
from jobengine.store.postgres import PostgresStore
from jobengine.types import EventKind, JobStatus, Priority

log = logging.getLogger("jobengine.reconcile")

TERMINAL_RQ = frozenset({"finished", "failed", "canceled", "stopped"})  # RQ statuses, and our event kinds
RESTORED_TTL = 7 * 24 * 3600
"""How long a Redis remembers which jobs reconcile re-created (a reset forgets it too)."""
_RECORD_ENDS = """
-- KEYS[1] the recorded set, KEYS[2] the events stream; ARGV[1] the set's TTL, then per job:
-- member, n, n field/value pairs. XADD the event only if SADD added the member: once per end.
local i, out = 2, {}
while i <= #ARGV do
  local member, n = ARGV[i], tonumber(ARGV[i + 1])
  local added = redis.call('SADD', KEYS[1], member)
  if added == 1 then redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 2, i + 1 + 2 * n)) end
  out[#out + 1] = added
  i = i + 2 + 2 * n
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return out
"""
_LANES: tuple[Priority | None, ...] = (*sorted(Priority, key=lambda p: -p.rank), None)  # None: off the lanes

Progress = Callable[[int, int], None]
"""Called after each page with (jobs examined so far, jobs in flight when the run began)."""


@dataclass(frozen=True)
class ResetStatus:
    """The Redis epoch against the one PostgreSQL recorded."""

    redis_epoch: str | None
    recorded_epoch: str | None

    @property
    def reset(self) -> bool:
        """Redis lost its data since PostgreSQL recorded its epoch (and no reconcile followed)."""
        return self.recorded_epoch is not None and self.redis_epoch != self.recorded_epoch


@dataclass(frozen=True)
class Lost:
    """An in-flight job Redis no longer has, and why it is (or is not) re-created now."""

    job_id: str
    status: JobStatus  # as PostgreSQL holds it
    reason: str  # restorable | no_payload | recent | pending_history


@dataclass(frozen=True)
class Ended:
    """A stale job with nothing on its way to end it in PostgreSQL: a run records `outcome`."""

    job_id: str
    queue: str
    outcome: str  # finished | failed | canceled | stopped, as RQ's hash says
    at: float | None = None  # when, as RQ says (ended_at, or the canceled registry's score)


@dataclass(frozen=True)
class Findings:
    """What `find` saw: the in-flight jobs examined, those Redis lost, the stale ones, and the
    stale ones a run would record the end of."""

    examined: int
    lost: tuple[Lost, ...]
    stale: tuple[str, ...]  # Redis says terminal, PostgreSQL in flight
    ended: tuple[Ended, ...] = ()


@dataclass(frozen=True)
class ReconcileReport:
    """What one run found and did. `missing` = every in-flight job without a Redis hash, split
    into restored (per PostgreSQL status; in a dry run: would be), already_restored (another
    reconciler was first), not_restorable, recent, pending_history and settled (left the
    in-flight set while the run looked). `stale`: in flight in PostgreSQL, ended in Redis;
    `recorded` (per outcome): those whose end the run recorded (in a dry run: would)."""

    dry_run: bool
    epoch: str | None
    examined: int = 0
    missing: int = 0
    restored: dict[str, int] = field(default_factory=dict)
    already_restored: int = 0
    not_restorable: int = 0
    recent: int = 0
    pending_history: int = 0
    settled: int = 0
    stale: tuple[str, ...] = ()
    recorded: dict[str, int] = field(default_factory=dict)
    reset_cleared: bool = False

    @property
    def restored_total(self) -> int:
        return sum(self.restored.values())

    @property
    def recorded_total(self) -> int:
        return sum(self.recorded.values())

    def summary(self) -> str:
        restored = ",".join(f"{k}:{v}" for k, v in sorted(self.restored.items())) or "0"
        recorded = ",".join(f"{k}:{v}" for k, v in sorted(self.recorded.items())) or "0"
        return (f"examined={self.examined} missing={self.missing} restored={restored} "
                f"already_restored={self.already_restored} not_restorable={self.not_restorable} "
                f"recent={self.recent} pending_history={self.pending_history} settled={self.settled} "
                f"stale={len(self.stale)} recorded={recorded}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _waits(job: RestorableJob, now: datetime) -> bool:
    """True when the job goes back to its scheduled registry (scheduled and not due yet)."""
    return job.status is JobStatus.SCHEDULED and job.scheduled_for is not None and job.scheduled_for > now


class _StreamJobs:
    """Job ids with a final event (finished, failed, canceled, stopped: what may take a hash
    away) waiting in the history stream (or in `key`: the dead letters), read incrementally;
    entries only leave the stream after PostgreSQL has them. Other events (such as reconcile's
    restores) explain no missing hash."""

    def __init__(self, connection: redis.Redis, key: str = keys.EVENTS_STREAM) -> None:
        self.connection = connection
        self.key = key
        self.ids: set[str] = set()
        self._last: str | None = None

    def refresh(self, chunk: int = 1000) -> set[str]:
        while True:
            low = "-" if self._last is None else f"({self._last}"
            entries: list[tuple[Any, dict[Any, Any]]] = self.connection.xrange(  # type: ignore[assignment]
                self.key, min=low, max="+", count=chunk)
            for eid, raw in entries:
                job, kind = raw.get(b"j", raw.get("j")), raw.get(b"k", raw.get("k"))
                if job is not None and kind is not None and _text(kind) in TERMINAL_RQ:
                    self.ids.add(_text(job))
                self._last = _text(eid)
            if len(entries) < chunk:
                return self.ids


@dataclass
class _Page:
    examined: int
    restorable: list[RestorableJob]
    lost: list[Lost]
    stale: list[str]
    settled: int
    ended: list[Ended] = field(default_factory=list)


class Reconciler:
    """Finds and re-creates the in-flight jobs Redis lost. Safe to run concurrently."""

    def __init__(self, connection: redis.Redis, store: PostgresStore, settings: Settings, *,
                 page_size: int = 500, grace: float = 60.0, guard: Callable[[str], None] | None = None) -> None:
        self.connection = connection
        self.guard = guard  # refuses an operator's run (read-only); the workers' own runs pass
        self.store = store
        self.settings = settings
        self.page_size = page_size
        self.grace = grace
        text = resources.files("jobengine").joinpath("reconcile.lua").read_text(encoding="utf-8")
        self._restore = connection.register_script(text)
        self._record = connection.register_script(_RECORD_ENDS)

    # ---- reset detection -------------------------------------------------------------------
    def ensure_epoch(self) -> str:
        """This Redis's epoch, written when absent; recorded in PostgreSQL if it holds none yet
        (a recorded one is never replaced here: a reset stays detected)."""
        self.connection.set(keys.REDIS_EPOCH, secrets.token_hex(16), nx=True)
        epoch = self._redis_epoch()
        assert epoch is not None
        self.store.record_redis_epoch(epoch, replace=False)
        return epoch

    def detect_reset(self, *, bootstrap: bool = True) -> ResetStatus:
        """Compare the Redis epoch with PostgreSQL's; with `bootstrap`, a deployment that has
        no recorded epoch gets one (ensure_epoch). Raises StoreUnavailable / RedisError."""
        status = ResetStatus(self._redis_epoch(), self.store.redis_epoch())
        if status.recorded_epoch is None and bootstrap:
            epoch = self.ensure_epoch()
            return ResetStatus(epoch, self.store.redis_epoch())
        return status

    def _redis_epoch(self) -> str | None:
        raw: Any = self.connection.get(keys.REDIS_EPOCH)
        return None if raw is None else _text(raw)

    # ---- finding ---------------------------------------------------------------------------
    def find(self, progress: Progress | None = None) -> Findings:
        """Every in-flight job Redis lost (with why it would or would not be re-created) and the
        stale ones. Writes nothing."""
        examined, lost, stale, ended = 0, [], [], []
        for page in self._pages(progress):
            examined += page.examined
            lost += page.lost + [Lost(j.id, j.status, "restorable") for j in page.restorable]
            stale += page.stale
            ended += page.ended
        return Findings(examined, tuple(lost), tuple(stale), tuple(ended))

    def _pages(self, progress: Progress | None) -> Iterator[_Page]:
        total = self.store.in_flight_count() if progress is not None else 0
        stream = _StreamJobs(self.connection)
        parked = _StreamJobs(self.connection, keys.EVENTS_DEAD)
        done = 0
        for lane in _LANES:
            after: tuple[datetime, str] | None = None
            while True:
                rows = self.store.in_flight_page(lane, after, self.page_size)
                if not rows:
                    break
                after = (rows[-1][2], rows[-1][0])
                page = self._classify(rows, stream, parked)
                yield page
                done += page.examined
                if progress is not None:
                    progress(done, max(total, done))
                if len(rows) < self.page_size:
                    break

    def _classify(self, rows: Sequence[tuple[str, JobStatus, datetime]], stream: _StreamJobs,
                  parked: _StreamJobs) -> _Page:
        """Order matters: Redis first, then the stream, then PostgreSQL again. A job whose hash
        went away (finished with result_ttl 0, say) has its event in the stream by then, or in
        PostgreSQL: it is never mistaken for a lost one; nor is a job whose end is on its way
        recorded again (workers write RQ's status and the event in one MULTI)."""
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id, _, _ in rows:
                pipe.hmget(keys.rq_job_key(job_id), "status", "ended_at", "origin")
                pipe.exists(keys.rq_job_key(job_id))
            replies = pipe.execute()
        cutoff = datetime.now(UTC) - timedelta(seconds=self.grace)
        lost: list[Lost] = []
        stale: dict[str, list[Any]] = {}  # job id -> [RQ status, ended_at, origin]
        candidates: list[str] = []
        for (job_id, status, created_at), fields, exists in zip(rows, replies[::2], replies[1::2], strict=True):
            if exists:
                if fields[0] is not None and _text(fields[0]) in TERMINAL_RQ:
                    stale[job_id] = [_text(f) if f is not None else None for f in fields]
            elif created_at > cutoff:
                lost.append(Lost(job_id, status, "recent"))
            else:
                candidates.append(job_id)
        restorable: list[RestorableJob] = []
        settled = 0
        if candidates:
            pending = stream.refresh()
            found = {j.id: j for j in self.store.restorable_jobs([j for j in candidates if j not in pending])}
            by_id = {job_id: status for job_id, status, _ in rows}
            for job_id in candidates:
                job = found.get(job_id)
                if job_id in pending:
                    lost.append(Lost(job_id, by_id[job_id], "pending_history"))
                elif job is None:
                    settled += 1  # finished (or gone) since the page was read
                elif job.payload is None or job.options is None:
                    lost.append(Lost(job_id, job.status, "no_payload"))
                else:
                    restorable.append(job)
        ended = self._ended(stale, stream.refresh() | parked.refresh()) if stale else []
        return _Page(len(rows), restorable, lost, list(stale), settled, ended)

    def _ended(self, stale: dict[str, list[Any]], pending: set[str]) -> list[Ended]:
        """The stale jobs to record: no final event in the stream or parked, an end (RQ's
        `ended_at`, else the canceled registry's score; unknown: old) older than `grace`, and
        still in flight in PostgreSQL (read last: an event applied meanwhile took it out)."""
        waiting = [j for j in stale if j not in pending]
        canceled = [j for j in waiting if not stale[j][1] and stale[j][2] and stale[j][0] == "canceled"]
        if canceled:
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in canceled:
                    pipe.zscore(keys.rq_canceled_key(stale[job_id][2]), job_id)
                scores = dict(zip(canceled, pipe.execute(), strict=True))
        else:
            scores = {}
        cutoff = time.time() - self.grace
        old: dict[str, float | None] = {}
        for job_id in waiting:
            at: float | None = scores.get(job_id)
            if stale[job_id][1]:
                try:
                    at = utcparse(stale[job_id][1]).timestamp()
                except ValueError:
                    at = None
            if at is None or at <= cutoff:
                old[job_id] = at
        in_flight = {job.id: job.queue for job in self.store.restorable_jobs(list(old))} if old else {}
        return [Ended(j, in_flight[j], stale[j][0], at) for j, at in old.items() if j in in_flight]

    # ---- reconciling -----------------------------------------------------------------------
    def run(self, dry_run: bool = False, progress: Progress | None = None) -> ReconcileReport:
        """Re-create every restorable lost job once, record the end RQ shows of stale jobs with
        nothing on its way to record it (see the module); returns the counts. A run that left no job
        for later (none too recent, none whose history is pending) and was not a dry run records
        the Redis epoch in PostgreSQL: the reset is reconciled. A dry run writes nothing.
        Refused (OperationRefused) when the engine is read-only, unless a worker runs it after a
        detected reset (`run_if_reset`)."""
        if not dry_run and self.guard is not None:
            self.guard("reconcile")
        return self._run(dry_run, progress)

    def _run(self, dry_run: bool, progress: Progress | None) -> ReconcileReport:
        epoch = self._redis_epoch() if dry_run else self.ensure_epoch()
        counts = {"examined": 0, "missing": 0, "already_restored": 0, "not_restorable": 0, "recent": 0,
                  "pending_history": 0, "settled": 0}
        restored: dict[str, int] = {}
        recorded: dict[str, int] = {}
        stale: list[str] = []
        for page in self._pages(progress):
            counts["examined"] += page.examined
            counts["settled"] += page.settled
            counts["missing"] += len(page.lost) + len(page.restorable) + page.settled
            for item in page.lost:
                counts["not_restorable" if item.reason == "no_payload" else item.reason] += 1
            stale += page.stale
            done = page.restorable if dry_run else self._restore_jobs(page.restorable)
            for job in done:
                restored[job.status.value] = restored.get(job.status.value, 0) + 1
            counts["already_restored"] += len(page.restorable) - len(done)
            for end in page.ended if dry_run else self._record_ends(page.ended):
                recorded[end.outcome] = recorded.get(end.outcome, 0) + 1
        cleared = not dry_run and counts["recent"] == 0 and counts["pending_history"] == 0
        report = ReconcileReport(dry_run=dry_run, epoch=epoch, restored=restored, stale=tuple(stale),
                                 recorded=recorded, reset_cleared=cleared, **counts)
        if not dry_run:
            if cleared:
                assert epoch is not None
                self.store.record_redis_epoch(epoch, replace=True)
            user, host = actor()
            self.store.record_audit("reconcile", None, user, host, report.summary())
            log.info("reconcile: %s", report.summary())
        return report

    def _restore_jobs(self, jobs: Sequence[RestorableJob]) -> list[RestorableJob]:
        """Re-create `jobs` in one script call; returns those this call re-created."""
        if not jobs:
            return []
        now = datetime.now(UTC)
        stamp = utcformat(now)
        keys_: list[str] = [keys.RECONCILE_RESTORED, keys.RQ_QUEUES]
        args: list[Any] = [RESTORED_TTL]
        for job in jobs:
            assert job.payload is not None and job.options is not None
            due = _waits(job, now)
            retries = job.attempts if job.status is not JobStatus.PROCESSING else max(job.attempts - 1, 0)
            fields = rq_job_hash(job.payload, job.options, job.queue,
                                 JobStatus.SCHEDULED if due else JobStatus.QUEUED,
                                 utcformat(job.created_at.astimezone(UTC)), None if due else stamp, retries)
            queue_key = keys.rq_queue_key(job.queue)
            keys_ += [keys.rq_job_key(job.id), keys.rq_scheduled_key(job.queue) if due else queue_key]
            score = calendar.timegm(job.scheduled_for.utctimetuple()) if due and job.scheduled_for else 0  # as dispatch
            args += [job.id, "s" if due else "q", score, queue_key, len(fields)]
            for name, value in fields.items():
                args += [name, value]
        flags = self._restore(keys=keys_, args=args)
        done = [job for job, flag in zip(jobs, flags, strict=True) if flag]
        if done:
            with self.connection.pipeline(transaction=False) as pipe:
                for job in done:
                    due = _waits(job, now)
                    delay = (job.scheduled_for - now).total_seconds() if due and job.scheduled_for else None
                    message = f"restored by reconcile after Redis lost it (was {job.status.value})"
                    add_event(pipe, EventKind.SCHEDULED if due else EventKind.QUEUED, job.id, job.queue, at=now,
                              delay=delay, message=message)
                pipe.execute()
        return done

    def _record_ends(self, ended: Sequence[Ended]) -> list[Ended]:
        """One history event per job with the outcome RQ's hash shows (a failure with RQ's
        traceback), in one script call that writes each end once (`keys.RECONCILE_RECORDED`):
        the next run finds the events in the stream and skips the jobs. Returns those recorded."""
        if not ended:
            return []
        now = datetime.now(UTC)
        args: list[Any] = [RESTORED_TTL]
        for end in ended:
            details = self._failure(end.job_id) if end.outcome == "failed" else {}
            fields = event_fields(EventKind(end.outcome), end.job_id, end.queue, at=now,
                                  message=f"recorded by reconcile: {end.outcome} through RQ (not by jobtui)",
                                  **details)
            args += [f"{end.job_id} {end.outcome} {end.at or '?'}", len(fields)]
            for name, value in fields.items():
                args += [name, value]
        flags = self._record(keys=[keys.RECONCILE_RECORDED, keys.EVENTS_STREAM], args=args)
        return [end for end, flag in zip(ended, flags, strict=True) if flag]

    def _failure(self, job_id: str) -> dict[str, str]:
        """error_class, error_message and traceback of a job's last RQ result (empty: none)."""
        try:
            result = Job.fetch(job_id, connection=self.connection).latest_result()
        except NoSuchJobError:
            return {}
        text = (result.exc_string if result is not None else None) or ""
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        error_class, _, message = last.partition(": ")
        found = {"error_class": error_class, "error_message": message, "traceback": text}
        return {k: v for k, v in found.items() if v}

    def run_if_reset(self, lock_ttl: float = 300.0, progress: Progress | None = None) -> ReconcileReport | None:
        """Run once if a reset is detected and no other process holds the reconcile lock; None
        when there was nothing to do or another process is at it (what a worker calls now and then)."""
        if not self.detect_reset().reset:
            return None
        token = secrets.token_hex(8)
        if not self.connection.set(keys.RECONCILE_LOCK, token, nx=True, px=int(lock_ttl * 1000)):
            return None
        try:
            return self._run(False, progress)
        finally:
            # Released only if still ours (a run longer than the TTL may have lost it).
            self.connection.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                                 "end return 0", 1, keys.RECONCILE_LOCK, token)


class ReconcileTimer:
    """`jobtui worker`: a daemon thread that checks for a Redis reset every `[worker]
    reconcile_every` seconds and, when one is found, reconciles it (`run_if_reset`: under a Redis
    lock, so one process in the deployment does it), without waiting for an operator."""

    def __init__(self, reconciler: Reconciler, every: float) -> None:
        self.reconciler = reconciler
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconcile-timer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                report = self.reconciler.run_if_reset()
            except (redis.RedisError, StoreUnavailable) as exc:  # a server away: the next round tries again
                log.debug("reconcile check skipped: %s", exc)
                continue
            except Exception:
                log.exception("reconcile check failed")
                continue
            if report is not None:
                log.warning("Redis was reset: reconciled (%s)%s", report.summary(),
                            "" if report.reset_cleared else "; some jobs wait for the next round")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
