"""The read model: every Redis read of per-queue state, for the snapshot, the health check and
the Prometheus scrape (`jobengine.exporter`), goes through one probe, `QueueRead`.

A probe is one pipelined round trip however many queues there are: sizes, registries, the
`queue:{queue}:processed` counter, rate-limit use, the run-time overrides (merged with the
configuration by `ratelimit.limit.effective_limits`), the paused queues and the head jobs'
enqueue times (one small Lua script). The snapshot adds the last hour's per-minute buckets to
the same pipeline. Crossing a queue-size threshold logs one warning per crossing for the whole
deployment (the state lives in Redis; the process that flips it logs).

The snapshot is shared: computed at most once per `console.refresh` seconds for every console
and CLI reading it (a Redis lock picks the process that computes; see TaggedCache.shared). A
Redis or PostgreSQL outage degrades the snapshot (its `outages` say what is down) instead of
failing it. `jobengine.health.verdict` turns what was read into the verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
from rq.utils import utcparse

from jobengine import keys, metrics
from jobengine.cache import TAG_SNAPSHOT, TaggedCache
from jobengine.config import Settings
from jobengine.connection import where
from jobengine.errors import StoreUnavailable
from jobengine.health import verdict
from jobengine.lanes import parse_paused
from jobengine.models import (
    HealthReport,
    HistoryProgress,
    JobRecord,
    Outage,
    QueueProbe,
    QueueStats,
    RunningJob,
    Snapshot,
    StaleWorker,
    ThroughputPoint,
    WindowStats,
    WorkerInfo,
    WorkerLiveness,
)
from jobengine.ratelimit.limit import effective_limits, parse_overrides
from jobengine.ratelimit.storage import RedisWindowStorage
from jobengine.running import long_running, read_workers, warn_long_running

if TYPE_CHECKING:
    from jobengine.store.postgres import PostgresStore

log = logging.getLogger("jobengine.monitor")

#: RQ gives a worker's key this much more TTL than the next heartbeat needs; a key with less
#: left than this has missed its heartbeat.
STALE_GRACE = 60

#: The head job's enqueued_at of each queue (KEYS: queue lists; ARGV[1]: RQ's job key prefix).
_HEADS = """
local out = {}
for i, key in ipairs(KEYS) do
  local id = redis.call('LINDEX', key, 0)
  out[i] = id and redis.call('HGET', ARGV[1] .. id, 'enqueued_at') or false
end
return out
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def deployment_queues(connection: redis.Redis, settings: Settings) -> list[str]:
    """The configured lanes plus every queue RQ knows (plain `rq` producers included)."""
    known = sorted(keys.rq_queue_name(k) for k in connection.smembers(keys.RQ_QUEUES))
    return list(dict.fromkeys([*settings.queues, *known]))


class QueueRead:
    """One probe of `queues`: `append` its commands to a pipeline, `parse` their replies.

        read = QueueRead(["default"], settings.limits, time.time())
        with connection.pipeline(transaction=False) as pipe:
            read.append(pipe)
            ...                                  # the caller's own commands
            replies = pipe.execute()
        probes, rest = read.parse(replies[:len(read)]), replies[len(read):]
    """

    PER_QUEUE = 6

    def __init__(self, queues: Sequence[str], configured: Mapping[str, int], now: float) -> None:
        self.queues = list(queues)
        self.configured = configured
        self.now = now

    def __len__(self) -> int:
        return self.PER_QUEUE * len(self.queues) + (3 if self.queues else 2)

    def append(self, pipe: Any) -> None:
        for q in self.queues:
            pipe.llen(keys.rq_queue_key(q))
            pipe.zcard(keys.rq_scheduled_key(q))
            pipe.zcard(keys.rq_started_key(q))
            pipe.zcard(keys.rq_failed_key(q))
            pipe.get(keys.queue_processed_key(q))
            RedisWindowStorage.queue_usage(pipe, q, self.now)
        pipe.hgetall(keys.RATE_LIMITS)
        pipe.hgetall(keys.PAUSED)
        if self.queues:
            pipe.eval(_HEADS, len(self.queues), *map(keys.rq_queue_key, self.queues), keys.RQ_JOB_PREFIX)

    def parse(self, replies: Sequence[Any]) -> list[QueueProbe]:
        n = self.PER_QUEUE * len(self.queues)
        limits = effective_limits(self.configured, parse_overrides(replies[n]))
        paused = parse_paused(replies[n + 1])
        heads = replies[n + 2] if self.queues else []
        probes = []
        for i, q in enumerate(self.queues):
            size, scheduled, started, failed, processed, used = replies[i * self.PER_QUEUE:(i + 1) * self.PER_QUEUE]
            at = _text(heads[i])
            wait = self.now - utcparse(at).timestamp() if at else None
            limit = limits.get(q)
            probes.append(QueueProbe(
                name=q, size=int(size), scheduled=int(scheduled), started=int(started), failed=int(failed),
                processed=int(processed or 0), oldest_wait=max(0.0, wait) if wait is not None else None,
                rate_limit=limit.amount if limit is not None else None, rate_used=int(used),
                paused=paused.get(q)))
        return probes


def probe_queues(connection: redis.Redis, settings: Settings, queues: Sequence[str] | None = None,
                 now: float | None = None) -> list[QueueProbe]:
    """Probe `queues` (default: the configured lanes) in one round trip."""
    read = QueueRead(settings.queues if queues is None else queues, settings.limits,
                     datetime.now(UTC).timestamp() if now is None else now)
    with connection.pipeline(transaction=False) as pipe:
        read.append(pipe)
        return read.parse(pipe.execute())


def read_liveness(connection: redis.Redis, now: float | None = None) -> WorkerLiveness:
    """Dead fast workers not recovered yet, and live ones whose RQ registration vanished: two
    round trips (see jobengine.runtime.recovery)."""
    now = datetime.now(UTC).timestamp() if now is None else now
    names = sorted(_text(n) or "" for n in connection.smembers(keys.WORKERS))
    if not names:
        return WorkerLiveness()
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(keys.worker_alive_key(name))
            pipe.hget(keys.worker_held_key(name), "beat")
            pipe.sismember(keys.RQ_WORKERS, keys.rq_worker_key(name))  # in `rq info`'s set, not just a hash
        raw = pipe.execute()
    dead: list[tuple[str, float | None]] = []
    unregistered: list[str] = []
    for i, name in enumerate(names):
        alive, beat, registered = raw[3 * i:3 * i + 3]
        if not alive:
            dead.append((name, max(0.0, now - float(beat)) if beat else None))
        elif not registered:
            unregistered.append(name)
    return WorkerLiveness(tuple(dead), tuple(unregistered))


class Monitor:
    """Builds QueueStats, WorkerInfo, Snapshot and HealthReport."""

    def __init__(self, settings: Settings, connection: redis.Redis, store: PostgresStore,
                 cache: TaggedCache | None = None) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store
        self.cache = cache or TaggedCache(connection)

    def redis_where(self) -> str:
        return where(self.connection)

    # ---- Redis ---------------------------------------------------------------------------
    def probe(self, queues: Sequence[str] | None = None, now: float | None = None) -> list[QueueProbe]:
        """Probe `queues` (default: the configured lanes): one round trip."""
        return probe_queues(self.connection, self.settings, queues, now)

    def queue_stats(self, now: datetime | None = None) -> list[QueueStats]:
        """Size, scheduled, running, failed, oldest wait, per-minute counts and rate-limit use."""
        return self._queues_and_throughput(now or datetime.now(UTC))[0]

    def _queues_and_throughput(self, now: datetime) -> tuple[list[QueueStats], list[ThroughputPoint]]:
        """The probe and the minute buckets in one round trip; threshold flips in a second one."""
        stamp = now.timestamp()
        minutes = metrics.minute_ids(stamp, 60)
        read = QueueRead(self.settings.queues, self.settings.limits, stamp)
        with self.connection.pipeline(transaction=False) as pipe:
            read.append(pipe)
            metrics.read_buckets(pipe, minutes)
            raw = pipe.execute()
        probes, buckets = read.parse(raw[:len(read)]), metrics.parse_buckets(raw[len(read):])
        self._flip_thresholds(probes, stamp)
        stats = [QueueStats(
            name=p.name, priority=self.settings.priority_of_queue(p.name), size=p.size, scheduled=p.scheduled,
            running=p.started, failed=p.failed, oldest_wait=p.oldest_wait,
            processed_per_minute=metrics.queue_series(buckets, p.name, "p"),
            failed_per_minute=metrics.queue_series(buckets, p.name, "f"),
            rate_limit=p.rate_limit, rate_used=p.rate_used if p.rate_limit is not None else 0,
            size_threshold=self.settings.queue_size.get(p.name), paused=p.paused,
        ) for p in probes]
        return stats, metrics.throughput(buckets, minutes)

    def _flip_thresholds(self, probes: Sequence[QueueProbe], stamp: float) -> None:
        sizes = {p.name: p.size for p in probes}
        watched = [q for q in sizes if q in self.settings.queue_size]
        if not watched:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            for q in watched:
                if sizes[q] > self.settings.queue_size[q]:
                    pipe.hsetnx(keys.OVER_THRESHOLD, q, f"{stamp:.0f}")
                else:
                    pipe.hdel(keys.OVER_THRESHOLD, q)
            flips = pipe.execute()
        self._log_crossings(watched, sizes, flips)

    def _log_crossings(self, watched: list[str], sizes: dict[str, int], flips: list[int]) -> None:
        """Log the crossings this process observed first (HSETNX / HDEL returned 1)."""
        for q, flipped in zip(watched, flips, strict=True):
            if not flipped:
                continue
            threshold = self.settings.queue_size[q]
            if sizes[q] > threshold:
                log.warning("queue %s holds %d jobs, over its size threshold of %d", q, sizes[q], threshold)
            else:
                log.info("queue %s is back under its size threshold of %d (%d jobs)", q, threshold, sizes[q])

    def workers(self) -> list[WorkerInfo]:
        """Registered RQ workers (ours and plain `rq worker`s) with their current job."""
        return self.worker_beats()[0]

    def worker_beats(self, now: datetime | None = None) -> tuple[list[WorkerInfo], list[StaleWorker]]:
        """Registered workers, and those whose heartbeat is overdue (their key's TTL, which RQ sets
        to the next heartbeat's deadline plus STALE_GRACE, has less than STALE_GRACE left)."""
        return self._worker_read(now or datetime.now(UTC))[:2]

    def _worker_read(self, now: datetime) -> tuple[list[WorkerInfo], list[StaleWorker], list[RunningJob]]:
        """Workers, stale workers and the jobs running longer than the threshold (warned once)."""
        read = read_workers(self.connection, now)
        stale = [StaleWorker(w.name, w.host, w.pid, w.last_heartbeat) for w in read.workers
                 if 0 <= read.ttls.get(w.name, -1) < STALE_GRACE]
        slow = long_running(read.running, self.settings.long_running, now)
        warn_long_running(self.connection, slow, self.settings.long_running, now, self._record_long_running)
        return read.workers, stale, slow

    def _record_long_running(self, job: RunningJob, line: str) -> None:
        """The warning's line in the job's history log (PostgreSQL down: only the log has it)."""
        try:
            self.store.record_job_log(job.id, "long_running", "warning", line)
        except StoreUnavailable as exc:
            log.info("long-running line of job %s not written to the history: %s", job.id, exc)

    def check_long_running(self) -> list[RunningJob]:
        """Warn about jobs past the threshold now (what `LongRunningWatch` runs); returns them."""
        return self._worker_read(datetime.now(UTC))[2]

    def window_stats(self, window: str = "1h") -> WindowStats:
        """The throughput series and p50/p95 per job type of a time window (jobengine.metrics.WINDOWS)."""
        return metrics.window_stats(self.connection, window)

    # ---- snapshot ------------------------------------------------------------------------
    def snapshot(self, failed_page: int = 50, *, shared: bool = True) -> Snapshot:
        """Everything the dashboard shows, computed once per refresh interval for every reader."""
        if not shared:
            return self.compute_snapshot(failed_page)
        try:
            # v3: the Snapshot carries long-running jobs; a process of the previous version never reads one
            return self.cache.shared(f"snapshot:v3:{failed_page}", max(0.1, self.settings.refresh),
                                     lambda: self.compute_snapshot(failed_page), tags=[TAG_SNAPSHOT])
        except redis.RedisError:
            return self.compute_snapshot(failed_page)  # degraded: its outages name Redis

    def compute_snapshot(self, failed_page: int = 50) -> Snapshot:
        """Build a snapshot now: four to six Redis round trips and four indexed PostgreSQL queries."""
        now = datetime.now(UTC)
        outages: list[Outage] = []
        queues: list[QueueStats] = []
        throughput: list[ThroughputPoint] = []
        workers: list[WorkerInfo] = []
        stale: list[StaleWorker] = []
        slow: list[RunningJob] = []
        history = None
        liveness = WorkerLiveness()
        try:
            queues, throughput = self._queues_and_throughput(now)
            workers, stale, slow = self._worker_read(now)
            history = self.history_progress()
            liveness = read_liveness(self.connection, now.timestamp())
        except redis.RedisError as exc:
            outages.append(Outage("redis", f"Redis unreachable: {exc}"))
        failed, failed_total, stuck = [], 0, []
        failures_hour = 0
        try:
            failed = self.store.failed_jobs(limit=failed_page)
            failed_total = self.store.failed_total()
            stuck = self.store.stuck_jobs(self.settings.stuck_after)
            failures_hour = self.store.failures_since(now - timedelta(hours=1))
        except StoreUnavailable as exc:
            outages.append(Outage("postgres", str(exc)))
        health = verdict(self.settings, now, queues=queues, workers=workers, stale=stale, stuck=stuck,
                         failures_hour=failures_hour, outages=outages, history=history,
                         redis_reset=self.redis_reset(), liveness=liveness)
        return Snapshot(taken_at=now, queues=tuple(queues), throughput=tuple(throughput),
                        workers=tuple(workers), health=health, failed=tuple(failed),
                        failed_total=failed_total, stuck=tuple(stuck), outages=tuple(outages),
                        long_running=tuple(slow))

    def health(self, now: datetime | None = None) -> HealthReport:
        """Every check, run now (not from the shared snapshot): fit for a probe. A few Redis round
        trips, the schema's state and two indexed queries; a database without the schema yet (a
        fresh deployment) is a warning, not an outage."""
        now = now or datetime.now(UTC)
        outages: list[Outage] = []
        queues: list[QueueStats] = []
        workers: list[WorkerInfo] = []
        stale: list[StaleWorker] = []
        history = None
        liveness = WorkerLiveness()
        try:
            self.connection.ping()
            queues = self.queue_stats(now)
            workers, stale, _slow = self._worker_read(now)
            history = self.history_progress()
            liveness = read_liveness(self.connection, now.timestamp())
        except redis.RedisError as exc:
            outages.append(Outage("redis", f"Redis at {self.redis_where()} is unreachable: {exc}"))
        stuck: list[JobRecord] = []
        failures_hour = 0
        schema = self._schema_state()
        try:
            if schema is None or schema[0]:  # a fresh database has no tables to read yet
                failures_hour = self.store.failures_since(now - timedelta(hours=1))
                stuck = self.store.stuck_jobs(self.settings.stuck_after)
        except StoreUnavailable as exc:
            outages.append(Outage("postgres", str(exc)))
        report = verdict(self.settings, now, queues=queues, workers=workers, stale=stale, stuck=stuck,
                         failures_hour=failures_hour, outages=outages, history=history,
                         redis_reset=self.redis_reset(), liveness=liveness)
        if schema is not None and schema[1]:
            applied, pending = schema
            note = (f"The PostgreSQL schema is {'not applied yet' if not applied else 'behind'} "
                    f"({len(pending)} of {len(applied) + len(pending)} migrations pending): `jobtui migrate` "
                    "applies them (workers and the console apply them when they start).")
            report = replace(report, reasons=(*report.reasons, note),
                             verdict="warning" if report.verdict == "healthy" else report.verdict)
        return report

    def _schema_state(self) -> tuple[list[str], list[str]] | None:
        """(applied, pending) migrations; None when PostgreSQL cannot say (the reads report why)."""
        try:
            return self.store.migration_state()
        except StoreUnavailable:
            return None

    def next_scheduled(self, queues: Sequence[str] | None = None) -> tuple[int, datetime | None]:
        """How many jobs wait in the scheduled registries of `queues` (default: the lanes) and when
        the first is due: one round trip."""
        names = list(self.settings.queues if queues is None else queues)
        with self.connection.pipeline(transaction=False) as pipe:
            for q in names:
                pipe.zcard(keys.rq_scheduled_key(q))
                pipe.zrange(keys.rq_scheduled_key(q), 0, 0, withscores=True)
            raw = pipe.execute()
        total = sum(int(n) for n in raw[::2])
        firsts = [float(first[0][1]) for first in raw[1::2] if first]
        return total, datetime.fromtimestamp(min(firsts), UTC) if firsts else None

    def history_progress(self) -> HistoryProgress:
        """The history stream's backlog and the age of its oldest entry (by Redis' clock: entry
        ids are Redis times), the writers' last write and last error, the dead letters: one
        round trip."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.EVENTS_STREAM)
            pipe.xrange(keys.EVENTS_STREAM, "-", "+", count=1)
            pipe.xlen(keys.EVENTS_DEAD)
            pipe.hgetall(keys.HISTORY_PROGRESS)
            pipe.time()
            backlog, first, dead, progress, (secs, micros) = pipe.execute()
        clock = int(secs) + int(micros) / 1e6
        oldest = None
        if backlog and first:
            oldest = max(0.0, clock - int((_text(first[0][0]) or "0-0").split("-")[0]) / 1000)
        info = {_text(k): _text(v) for k, v in progress.items()}
        last_write, error_at = (float(t) if (t := info.get(name)) else None for name in ("last_write", "last_error_at"))
        error = info.get("last_error") if error_at is not None and (last_write is None or error_at > last_write) \
            else None
        return HistoryProgress(backlog=int(backlog), oldest_age=oldest,
                               last_write_age=max(0.0, clock - last_write) if last_write is not None else None,
                               dead_letters=int(dead), last_error=error)

    def redis_reset(self) -> bool:
        """Redis's epoch differs from the one PostgreSQL recorded: Redis lost its data and no
        reconcile has run since (see jobengine.reconcile). False when either cannot be read."""
        try:
            recorded = self.store.redis_epoch()
            if recorded is None:
                return False
            current: Any = self.connection.get(keys.REDIS_EPOCH)
        except (redis.RedisError, StoreUnavailable):
            return False  # the outage itself is reported
        return current is None or (current.decode() if isinstance(current, bytes) else current) != recorded


__all__ = ["STALE_GRACE", "Monitor", "QueueRead", "ThroughputPoint", "deployment_queues", "probe_queues",
           "read_liveness"]
