"""Metrics: counters written with each job's bookkeeping, per-minute buckets, Prometheus export.

Written by `record_metrics` inside the pipeline that already carries a job's transition (no
round trip of its own), all in Redis, deployment-wide:

- `jobs.processed{type,queue,status}`: runs ended (finished, failed, retry, stopped);
- `jobs.failed{type,error}`: runs that raised (retried or final), by exception class;
- `jobs.duration{type}`: run time histogram (sum + buckets);
- `jobs.deferred{queue}`: rate-limit deferrals;
- per-minute buckets (`p:{queue}` finished, `f:{queue}` final failures), kept two hours, for
  the console's sparklines and throughput chart;
- the specification's `queue:{queue}:processed` (INCR, EXPIRE 3600).

`DeploymentCollector` exports them, plus queue sizes read at scrape time (`queue.size{queue}`),
to Prometheus: one pipelined Redis read per scrape, never PostgreSQL, so scraping costs the
same with a million jobs in history.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jobengine import keys
from jobengine.config import Settings
from jobengine.models import ThroughputPoint
from jobengine.types import EventKind

BUCKET_TTL = 2 * 3600  # minute buckets outlive the hour the console shows
PROCESSED_TTL = 3600  # the specification's queue:{queue}:processed expiry
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                    300.0, 600.0, 1800.0, 3600.0)
_RUN_END = {EventKind.FINISHED: "finished", EventKind.FAILED: "failed", EventKind.RETRY: "retry",
            EventKind.STOPPED: "stopped"}


@functools.lru_cache(maxsize=4096)  # the same few label sets, for every job
def _field(*labels: str) -> str:
    return json.dumps(labels, separators=(",", ":"))


def _labels(field: bytes | str) -> list[str]:
    try:
        value = json.loads(field)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def bucket_label(seconds: float) -> str:
    """The upper bound of the histogram bucket `seconds` falls in."""
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


# ---- writing (inside a worker's bookkeeping pipeline) ---------------------------------------------

def record_metrics(pipe: Any, kind: EventKind, queue: str, details: Mapping[str, Any],
                   now: float | None = None) -> None:
    """Append the counter, timing and bucket updates of one transition to `pipe`."""
    if kind is EventKind.DEFERRED:
        pipe.hincrby(keys.METRICS_DEFERRED, queue, 1)
        return
    status = _RUN_END.get(kind)
    if status is None:
        return
    job_type = str(details.get("type") or "unknown")
    pipe.hincrby(keys.METRICS_PROCESSED, _field(job_type, queue, status), 1)
    duration = details.get("duration")
    if duration is not None:
        seconds = max(0.0, float(duration))
        pipe.hincrbyfloat(keys.METRICS_DURATION, _field(job_type, "sum"), seconds)
        pipe.hincrby(keys.METRICS_DURATION, _field(job_type, bucket_label(seconds)), 1)
    if kind in (EventKind.FAILED, EventKind.RETRY):
        error = str(details.get("error_class") or "unknown")
        pipe.hincrby(keys.METRICS_FAILED, _field(job_type, error), 1)
    if kind in (EventKind.FINISHED, EventKind.FAILED):
        bucket = keys.minute_bucket_key(int((now if now is not None else time.time()) // 60))
        pipe.hincrby(bucket, f"{'p' if kind is EventKind.FINISHED else 'f'}:{queue}", 1)
        pipe.expire(bucket, BUCKET_TTL)
    if kind is EventKind.FINISHED:
        pipe.incr(keys.queue_processed_key(queue))
        pipe.expire(keys.queue_processed_key(queue), PROCESSED_TTL)


# ---- per-minute buckets (console) ---------------------------------------------------------------

def minute_ids(now: float, minutes: int = 60) -> list[int]:
    """The last `minutes` minutes (epoch seconds // 60), oldest first, the current one last."""
    current = int(now // 60)
    return list(range(current - minutes + 1, current + 1))


def read_buckets(pipe: Any, minutes: Sequence[int]) -> None:
    """Append one HGETALL per minute to `pipe`."""
    for minute in minutes:
        pipe.hgetall(keys.minute_bucket_key(minute))


def parse_buckets(raw: Sequence[Mapping[bytes | str, bytes | str]]) -> list[dict[str, int]]:
    return [{_text(k): int(v) for k, v in bucket.items()} for bucket in raw]


def queue_series(buckets: Sequence[Mapping[str, int]], queue: str, kind: str = "p") -> tuple[int, ...]:
    """Per-minute counts of one queue: kind "p" processed, "f" failed."""
    field = f"{kind}:{queue}"
    return tuple(b.get(field, 0) for b in buckets)


def throughput(buckets: Sequence[Mapping[str, int]], minutes: Sequence[int]) -> list[ThroughputPoint]:
    """Processed and failed per minute across every queue."""
    points = []
    for minute, bucket in zip(minutes, buckets, strict=True):
        processed = sum(n for f, n in bucket.items() if f.startswith("p:"))
        failed = sum(n for f, n in bucket.items() if f.startswith("f:"))
        points.append(ThroughputPoint(datetime.fromtimestamp(minute * 60, UTC), processed, failed))
    return points


def minute_totals(connection: redis.Redis, queues: Sequence[str], minutes: int = 60,
                  now: float | None = None) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Queue -> (processed per minute, failed per minute) over the last `minutes` minutes."""
    ids = minute_ids(now if now is not None else time.time(), minutes)
    with connection.pipeline(transaction=False) as pipe:
        read_buckets(pipe, ids)
        buckets = parse_buckets(pipe.execute())
    return {q: (queue_series(buckets, q, "p"), queue_series(buckets, q, "f")) for q in queues}


# ---- Prometheus ------------------------------------------------------------------------------------

def deployment_queues(connection: redis.Redis, settings: Settings) -> list[str]:
    """The configured lanes plus every queue RQ knows (plain `rq` producers included)."""
    known = sorted(_text(k).removeprefix("rq:queue:") for k in connection.smembers("rq:queues"))
    return list(dict.fromkeys([*settings.queues, *known]))


class DeploymentCollector(Collector):
    """Queue sizes and job counters of the whole deployment, read from Redis at each scrape."""

    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobengine_redis_up", "1 when Redis answered this scrape.")
        try:
            families = self._families()
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        queues = deployment_queues(self.connection, self.settings)
        now = time.time()
        with self.connection.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.llen(f"rq:queue:{q}")
                pipe.zcard(f"rq:scheduled:{q}")
                pipe.zcard(f"rq:wip:{q}")
                pipe.zcard(f"rq:failed:{q}")
                pipe.get(keys.queue_processed_key(q))
                pipe.zcount(keys.rate_window_key(q), f"({now - 60}", "+inf")
            for name in (keys.METRICS_PROCESSED, keys.METRICS_FAILED, keys.METRICS_DURATION,
                         keys.METRICS_DEFERRED, keys.RATE_LIMITS):
                pipe.hgetall(name)
            pipe.scard("rq:workers")
            pipe.xlen(keys.EVENTS_STREAM)
            raw = pipe.execute()
        per_queue, rest = raw[:6 * len(queues)], raw[6 * len(queues):]
        processed, failed, duration, deferred, overrides, workers, backlog = rest
        gauges = {name: GaugeMetricFamily(name, doc, labels=["queue"]) for name, doc in (
            ("queue_size", "Jobs waiting on the queue."),
            ("queue_scheduled", "Jobs scheduled (delays, retries, rate-limit deferrals)."),
            ("queue_running", "Jobs running."),
            ("queue_failed", "Jobs in RQ's failed registry."),
            ("queue_processed", "Jobs finished since the queue was last idle for an hour "
                                "(the specification's queue:{queue}:processed)."),
            ("queue_rate_used", "Jobs admitted by the rate limit in the last 60 s."),
        )}
        limit_family = GaugeMetricFamily("queue_rate_limit", "Effective rate limit, jobs per minute.",
                                         labels=["queue"])
        limits = self._limits(overrides)
        for i, q in enumerate(queues):
            size, scheduled, running, failed_n, done, used = per_queue[6 * i:6 * i + 6]
            for name, value in zip(gauges, (size, scheduled, running, failed_n, int(done or 0), used),
                                   strict=True):
                gauges[name].add_metric([q], float(value))
            if limits.get(q) is not None:
                limit_family.add_metric([q], float(limits[q]))  # type: ignore[arg-type]
        families: list[Metric] = [*gauges.values(), limit_family]
        families.append(_counter("jobs_processed", "Job runs ended, by type, queue and status.",
                                 ["type", "queue", "status"], processed))
        families.append(_counter("jobs_failed", "Job runs that raised, by type and exception class.",
                                 ["type", "error"], failed))
        deferred_family = CounterMetricFamily("jobs_deferred", "Jobs deferred by a queue's rate limit.",
                                              labels=["queue"])
        for q, n in sorted(deferred.items()):
            deferred_family.add_metric([_text(q)], float(n))
        families.append(deferred_family)
        families.append(_histogram(duration))
        families.append(GaugeMetricFamily("workers", "Registered RQ workers.", value=float(workers)))
        families.append(GaugeMetricFamily("history_backlog", "Job events not yet written to PostgreSQL.",
                                          value=float(backlog)))
        return families

    def _limits(self, overrides: Mapping[bytes, bytes]) -> dict[str, int | None]:
        from jobengine.ratelimit.limit import parse_override

        limits: dict[str, int | None] = dict(self.settings.limits)
        for q, raw in overrides.items():
            is_set, limit = parse_override(raw)
            if is_set:
                limits[_text(q)] = limit.amount if limit is not None else None
        return limits


def _counter(name: str, doc: str, labels: list[str], raw: Mapping[bytes, bytes]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for field, value in sorted(raw.items()):
        values = _labels(field)
        if len(values) == len(labels):
            family.add_metric(values, float(value))
    return family


def _histogram(raw: Mapping[bytes, bytes]) -> HistogramMetricFamily:
    """Cumulative buckets from the per-bucket counts stored by `record_metrics`."""
    per_type: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        values = _labels(field)
        if len(values) == 2:
            per_type.setdefault(values[0], {})[values[1]] = float(value)
    family = HistogramMetricFamily("jobs_duration_seconds", "Job run time by type.", labels=["type"])
    for job_type, counts in sorted(per_type.items()):
        running = 0.0
        buckets = []
        for bound in [*map(repr, DURATION_BUCKETS), "+Inf"]:
            running += counts.get(bound, 0.0)
            buckets.append((bound, running))
        family.add_metric([job_type], buckets, counts.get("sum", 0.0))
    return family


def registry(connection: redis.Redis, settings: Settings, *, process: bool = False) -> CollectorRegistry:
    """A registry holding the deployment collector (and this process's metrics if `process`)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DeploymentCollector(connection, settings))
    if process:
        from prometheus_client import PlatformCollector, ProcessCollector

        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
    return reg


def exposition(connection: redis.Redis, settings: Settings) -> str:
    """The Prometheus text exposition of the deployment, as one scrape would return it."""
    return generate_latest(registry(connection, settings)).decode()


def serve(connection: redis.Redis, settings: Settings, port: int, addr: str = "0.0.0.0",
          *, process: bool = True) -> Any:
    """Serve /metrics on `port` from a daemon thread; returns the HTTP server (call shutdown())."""
    server, _thread = start_http_server(port, addr, registry=registry(connection, settings, process=process))
    return server
