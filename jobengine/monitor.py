"""Read-only views of the deployment: queue stats from Redis, the snapshot, the health verdict.

Queue stats cost two pipelined Redis round trips however many queues there are: sizes,
registries, the oldest waiting job, rate-limit use and the last hour's per-minute buckets
(processed and failed, written by the workers' bookkeeping), then the head jobs' enqueue
times and the threshold state. Crossing a queue-size threshold logs one warning per crossing
for the whole deployment (the state lives in Redis; the process that flips it logs).

The snapshot is shared: computed at most once per `console.refresh` seconds for every console
and CLI reading it (a Redis lock picks the process that computes; see TaggedCache.shared). A
Redis or PostgreSQL outage degrades the snapshot (its `errors` say what is down) instead of
failing it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.utils import utcparse
from rq.worker_registration import REDIS_WORKER_KEYS

from jobengine import keys, metrics
from jobengine.cache import TAG_SNAPSHOT, TaggedCache
from jobengine.config import Settings
from jobengine.errors import StoreUnavailable
from jobengine.health import STALE_GRACE, StaleWorker, check, verdict
from jobengine.models import HealthReport, QueueStats, Snapshot, ThroughputPoint, WorkerInfo
from jobengine.ratelimit.limit import parse_override
from jobengine.ratelimit.storage import RedisWindowStorage
from jobengine.store.postgres import PostgresStore

log = logging.getLogger("jobengine.monitor")

_PER_QUEUE = 6  # commands per queue in the first pipeline


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Monitor:
    """Builds QueueStats, WorkerInfo, Snapshot and HealthReport."""

    def __init__(self, settings: Settings, connection: redis.Redis, store: PostgresStore,
                 cache: TaggedCache | None = None) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store
        self.cache = cache or TaggedCache(connection)

    def redis_where(self) -> str:
        kw = self.connection.connection_pool.connection_kwargs
        return kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"

    # ---- Redis ---------------------------------------------------------------------------
    def queue_stats(self, now: datetime | None = None) -> list[QueueStats]:
        """Size, scheduled, running, failed, oldest wait, per-minute counts and rate-limit use."""
        return self._queues_and_throughput(now or datetime.now(UTC))[0]

    def _queues_and_throughput(self, now: datetime) -> tuple[list[QueueStats], list[ThroughputPoint]]:
        names = self.settings.queues
        stamp = now.timestamp()
        minutes = metrics.minute_ids(stamp, 60)
        with self.connection.pipeline(transaction=False) as pipe:
            for q in names:
                pipe.llen(f"rq:queue:{q}")
                pipe.zcard(f"rq:scheduled:{q}")
                pipe.zcard(f"rq:wip:{q}")
                pipe.zcard(f"rq:failed:{q}")
                pipe.lindex(f"rq:queue:{q}", 0)
                RedisWindowStorage.queue_usage(pipe, q, stamp)
            pipe.hgetall(keys.RATE_LIMITS)
            metrics.read_buckets(pipe, minutes)
            raw = pipe.execute()
        split = _PER_QUEUE * len(names)
        rows = [raw[i * _PER_QUEUE:(i + 1) * _PER_QUEUE] for i in range(len(names))]
        overrides, buckets = raw[split], metrics.parse_buckets(raw[split + 1:])
        limits: dict[str, int | None] = dict(self.settings.limits)
        for q, value in overrides.items():
            is_set, limit = parse_override(value)
            if is_set:
                limits[_text(q) or ""] = limit.amount if limit is not None else None
        heads = [_text(r[4]) for r in rows]
        sizes = {q: int(r[0]) for q, r in zip(names, rows, strict=True)}
        watched = [q for q in names if q in self.settings.queue_size]
        with self.connection.pipeline(transaction=False) as pipe:
            for head in heads:
                pipe.hget(f"rq:job:{head}", "enqueued_at") if head else pipe.echo("")
            for q in watched:
                if sizes[q] > self.settings.queue_size[q]:
                    pipe.hsetnx(keys.OVER_THRESHOLD, q, f"{stamp:.0f}")
                else:
                    pipe.hdel(keys.OVER_THRESHOLD, q)
            second = pipe.execute()
        enqueued = [_text(v) for v in second[:len(heads)]]
        self._log_crossings(watched, sizes, second[len(heads):])
        stats = []
        for q, row, at in zip(names, rows, enqueued, strict=True):
            wait = (now - utcparse(at)).total_seconds() if at else None
            limit = limits.get(q)
            stats.append(QueueStats(
                name=q, priority=self.settings.priority_of_queue(q), size=int(row[0]),
                scheduled=int(row[1]), running=int(row[2]), failed=int(row[3]),
                oldest_wait=max(0.0, wait) if wait is not None else None,
                processed_per_minute=metrics.queue_series(buckets, q, "p"),
                failed_per_minute=metrics.queue_series(buckets, q, "f"),
                rate_limit=limit, rate_used=int(row[5]) if limit is not None else 0,
                size_threshold=self.settings.queue_size.get(q),
            ))
        return stats, metrics.throughput(buckets, minutes)

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
        now = now or datetime.now(UTC)
        names = [_text(k) or "" for k in self.connection.smembers(REDIS_WORKER_KEYS)]
        if not names:
            return [], []
        with self.connection.pipeline(transaction=False) as pipe:
            for key in names:
                pipe.hgetall(key)
                pipe.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(key.removeprefix("rq:worker:")))
                pipe.ttl(key)
            raw = pipe.execute()
        workers, stale = [], []
        for i, key in enumerate(names):
            data = {_text(k): _text(v) for k, v in raw[3 * i].items()}
            if not data:
                continue  # expired worker still in the set
            executions = sorted(_text(e) or "" for e in raw[3 * i + 1])
            beat = data.get("last_heartbeat")
            info = WorkerInfo(
                name=key.removeprefix("rq:worker:"), host=data.get("hostname") or "?",
                pid=int(data.get("pid") or 0), state=data.get("state") or "?",
                current_job=executions[0].rpartition(":")[0] if executions else None,
                queues=tuple(q for q in (data.get("queues") or "").split(",") if q),
                last_heartbeat=utcparse(beat) if beat else None,
            )
            workers.append(info)
            ttl = int(raw[3 * i + 2])
            if 0 <= ttl < STALE_GRACE:
                stale.append(StaleWorker(info.name, info.host, info.pid, info.last_heartbeat))
        workers.sort(key=lambda w: (w.host, w.pid))
        return workers, stale

    # ---- snapshot ------------------------------------------------------------------------
    def snapshot(self, failed_page: int = 50, *, shared: bool = True) -> Snapshot:
        """Everything the dashboard shows, computed once per refresh interval for every reader."""
        if not shared:
            return self.compute_snapshot(failed_page)
        try:
            return self.cache.shared(f"snapshot:{failed_page}", max(0.1, self.settings.refresh),
                                     lambda: self.compute_snapshot(failed_page), tags=[TAG_SNAPSHOT])
        except redis.RedisError:
            return self.compute_snapshot(failed_page)  # degraded: its errors name Redis

    def compute_snapshot(self, failed_page: int = 50) -> Snapshot:
        """Build a snapshot now: four Redis round trips and four indexed PostgreSQL queries."""
        now = datetime.now(UTC)
        errors: list[str] = []
        queues: list[QueueStats] = []
        throughput: list[ThroughputPoint] = []
        workers: list[WorkerInfo] = []
        stale: list[StaleWorker] = []
        try:
            queues, throughput = self._queues_and_throughput(now)
            workers, stale = self.worker_beats(now)
        except redis.RedisError as exc:
            errors.append(f"Redis unreachable: {exc}")
        failed, failed_total, stuck = [], 0, []
        failures_hour = 0
        try:
            failed = self.store.failed_jobs(limit=failed_page)
            failed_total = self.store.failed_total()
            stuck = self.store.stuck_jobs(self.settings.stuck_after)
            failures_hour = self.store.failures_since(now - timedelta(hours=1))
        except StoreUnavailable as exc:
            errors.append(str(exc))
        health = verdict(self.settings, now, queues=queues, workers=workers, stale=stale, stuck=stuck,
                         failures_hour=failures_hour, errors=errors)
        return Snapshot(taken_at=now, queues=tuple(queues), throughput=tuple(throughput),
                        workers=tuple(workers), health=health, failed=tuple(failed),
                        failed_total=failed_total, stuck=tuple(stuck), errors=tuple(errors))

    def health(self) -> HealthReport:
        """Every check, run now (not from the shared snapshot): fit for a probe."""
        return check(self)


__all__ = ["Monitor", "ThroughputPoint"]
