"""Read-only views of the deployment: queue stats from Redis, the snapshot, the health verdict.

A snapshot costs two pipelined Redis round trips (however many queues and workers) plus a
few indexed PostgreSQL queries. A Redis or PostgreSQL outage degrades the snapshot (its
`errors` say what is down) instead of failing it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.utils import utcparse
from rq.worker_registration import REDIS_WORKER_KEYS

from jobengine.config import Settings
from jobengine.errors import StoreUnavailable
from jobengine.models import HealthReport, JobRecord, QueueStats, Snapshot, ThroughputPoint, WorkerInfo
from jobengine.store.postgres import PostgresStore

log = logging.getLogger("jobengine.monitor")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Monitor:
    """Builds QueueStats, WorkerInfo, Snapshot and HealthReport."""

    def __init__(self, settings: Settings, connection: redis.Redis, store: PostgresStore) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store

    # ---- Redis ---------------------------------------------------------------------------
    def queue_stats(self, now: datetime | None = None) -> list[QueueStats]:
        """Size, scheduled, running, failed and oldest wait of each lane's queue."""
        now = now or datetime.now(UTC)
        names = self.settings.queues
        with self.connection.pipeline(transaction=False) as pipe:
            for q in names:
                pipe.llen(f"rq:queue:{q}")
                pipe.zcard(f"rq:scheduled:{q}")
                pipe.zcard(f"rq:wip:{q}")
                pipe.zcard(f"rq:failed:{q}")
                pipe.lindex(f"rq:queue:{q}", 0)
            raw = pipe.execute()
        rows = [raw[i * 5:(i + 1) * 5] for i in range(len(names))]
        heads = [_text(r[4]) for r in rows]
        with self.connection.pipeline(transaction=False) as pipe:
            for head in heads:
                pipe.hget(f"rq:job:{head}", "enqueued_at") if head else pipe.echo("")
            enqueued = [_text(v) for v in pipe.execute()]
        stats = []
        for q, row, at in zip(names, rows, enqueued, strict=True):
            wait = (now - utcparse(at)).total_seconds() if at else None
            stats.append(QueueStats(
                name=q, priority=self.settings.priority_of_queue(q), size=int(row[0]),
                scheduled=int(row[1]), running=int(row[2]), failed=int(row[3]),
                oldest_wait=max(0.0, wait) if wait is not None else None,
                rate_limit=self.settings.limits.get(q), size_threshold=self.settings.queue_size.get(q),
            ))
        return stats

    def workers(self) -> list[WorkerInfo]:
        """Registered RQ workers (ours and plain `rq worker`s) with their current job."""
        keys = [_text(k) for k in self.connection.smembers(REDIS_WORKER_KEYS)]
        if not keys:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
                pipe.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(key.removeprefix("rq:worker:")))
            raw = pipe.execute()
        workers = []
        for i, key in enumerate(keys):
            data = {_text(k): _text(v) for k, v in raw[2 * i].items()}
            if not data:
                continue  # expired worker still in the set
            executions = sorted(_text(e) or "" for e in raw[2 * i + 1])
            beat = data.get("last_heartbeat")
            workers.append(WorkerInfo(
                name=key.removeprefix("rq:worker:"), host=data.get("hostname") or "?",
                pid=int(data.get("pid") or 0), state=data.get("state") or "?",
                current_job=executions[0].rpartition(":")[0] if executions else None,
                queues=tuple(q for q in (data.get("queues") or "").split(",") if q),
                last_heartbeat=utcparse(beat) if beat else None,
            ))
        return sorted(workers, key=lambda w: (w.host, w.pid))

    # ---- snapshot ------------------------------------------------------------------------
    def snapshot(self, failed_page: int = 50) -> Snapshot:
        """Everything the dashboard shows, degraded (not failed) when a server is down."""
        now = datetime.now(UTC)
        errors: list[str] = []
        queues: list[QueueStats] = []
        workers: list[WorkerInfo] = []
        try:
            queues = self.queue_stats(now)
            workers = self.workers()
        except redis.RedisError as exc:
            errors.append(f"Redis unreachable: {exc}")
        failed, failed_total, stuck, throughput = [], 0, [], []
        failures_hour = 0
        try:
            failed = self.store.failed_jobs(limit=failed_page)
            failed_total = self.store.failed_total()
            stuck = self.store.stuck_jobs(self.settings.stuck_after)
            failures_hour = self.store.failures_since(now - timedelta(hours=1))
            throughput = self.store.throughput_per_minute(now - timedelta(minutes=60), now)
        except StoreUnavailable as exc:
            errors.append(str(exc))
        health = self._verdict(now, queues, workers, stuck, failures_hour, errors)
        return Snapshot(taken_at=now, queues=tuple(queues), throughput=tuple(throughput),
                        workers=tuple(workers), health=health, failed=tuple(failed),
                        failed_total=failed_total, stuck=tuple(stuck), errors=tuple(errors))

    def health(self) -> HealthReport:
        return self.snapshot(failed_page=1).health

    def _verdict(self, now: datetime, queues: list[QueueStats], workers: list[WorkerInfo],
                 stuck: list[JobRecord], failures_hour: int, errors: list[str]) -> HealthReport:
        redis_ok = not any(e.startswith("Redis") for e in errors)
        pg_ok = not any("PostgreSQL" in e for e in errors)
        failing: list[str] = []
        warnings: list[str] = []
        if not redis_ok or not pg_ok:
            return HealthReport("unknown", tuple(errors), now, redis_ok, pg_ok, workers=len(workers))
        if failures_hour > self.settings.failed_per_hour:
            failing.append(f"{failures_hour} jobs failed in the last hour "
                           f"(threshold {self.settings.failed_per_hour}).")
        if stuck:
            ids = ", ".join(j.id for j in stuck[:5]) + (" …" if len(stuck) > 5 else "")
            failing.append(f"{len(stuck)} job(s) processing longer than "
                           f"{self.settings.stuck_after / 60:.0f} min: {ids}.")
        for q in queues:
            if q.over_threshold:
                warnings.append(f"Queue {q.name} holds {q.size} jobs (threshold {q.size_threshold}).")
        if not workers and any(q.size for q in queues):
            warnings.append("No worker is running but jobs are waiting.")
        verdict = "failing" if failing else "warning" if warnings else "healthy"
        return HealthReport(verdict, tuple(failing + warnings) or ("All checks pass.",), now, True, True,
                            failures_last_hour=failures_hour, stuck_jobs=tuple(j.id for j in stuck),
                            workers=len(workers))


__all__ = ["Monitor", "ThroughputPoint"]
