"""The Prometheus exporter: `jobtui metrics`, `jobtui worker --metrics-port`, `engine.metrics_text()`.

`DeploymentCollector` exports the counters `jobengine.metrics` records plus the queues' state,
probed at scrape time by the monitor's `QueueRead` (the same read the snapshot and the health
check use): one pipelined Redis read per scrape after listing the queues, never PostgreSQL, so
scraping costs the same with a million jobs in history.

`jobs_stuck` counts the jobs processing longer than `thresholds.stuck_after` from Redis alone:
the members of RQ's started registries (`job_id:execution_id`) and their job hashes'
`started_at` (a small Lua script in the same pipeline; the work is one HGET per running job).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from rq.utils import utcparse

from jobengine import keys
from jobengine.config import Settings
from jobengine.metrics import DURATION_BUCKETS, labels_of
from jobengine.monitor import QueueRead, deployment_queues

#: The started_at of every job in the started registries (KEYS: started registries; ARGV[1]:
#: RQ's job key prefix). Members are `job_id:execution_id`; a job whose hash is gone is skipped.
_STARTED = """
local out = {}
for _, key in ipairs(KEYS) do
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local id = string.match(member, '^(.*):[^:]*$') or member
    local at = redis.call('HGET', ARGV[1] .. id, 'started_at')
    if at then out[#out + 1] = at end
  end
end
return out
"""

_GAUGES = (
    ("queue_size", "Jobs waiting on the queue."),
    ("queue_scheduled", "Jobs scheduled (delays, retries, rate-limit deferrals)."),
    ("queue_running", "Jobs running."),
    ("queue_failed", "Jobs in RQ's failed registry."),
    ("queue_processed", "Jobs finished since the queue was last idle for an hour "
                        "(the specification's queue:{queue}:processed)."),
    ("queue_rate_used", "Jobs admitted by the rate limit in the last 60 s."),
    ("queue_paused", "1 while the queue is paused (jobtui pause): workers leave its jobs queued."),
)
_COUNTERS = (keys.METRICS_PROCESSED, keys.METRICS_FAILED, keys.METRICS_DURATION, keys.METRICS_DEFERRED)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class DeploymentCollector(Collector):
    """Queue state and job counters of the whole deployment, read from Redis at each scrape."""

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
        read = QueueRead(deployment_queues(self.connection, self.settings), self.settings.limits, time.time())
        with self.connection.pipeline(transaction=False) as pipe:
            read.append(pipe)
            for name in _COUNTERS:
                pipe.hgetall(name)
            pipe.scard(keys.RQ_WORKERS)
            pipe.xlen(keys.EVENTS_STREAM)
            if read.queues:
                pipe.eval(_STARTED, len(read.queues), *map(keys.rq_started_key, read.queues), keys.RQ_JOB_PREFIX)
            raw = pipe.execute()
        probes = read.parse(raw[:len(read)])
        processed, failed, duration, deferred, workers, backlog = raw[len(read):len(read) + 6]
        started = raw[len(read) + 6] if read.queues else []
        gauges = {name: GaugeMetricFamily(name, doc, labels=["queue"]) for name, doc in _GAUGES}
        limit_family = GaugeMetricFamily("queue_rate_limit", "Effective rate limit, jobs per minute.",
                                         labels=["queue"])
        for p in probes:
            values = (p.size, p.scheduled, p.started, p.failed, p.processed, p.rate_used, int(p.paused is not None))
            for family, value in zip(gauges.values(), values, strict=True):
                family.add_metric([p.name], float(value))
            if p.rate_limit is not None:
                limit_family.add_metric([p.name], float(p.rate_limit))
        wait_family = GaugeMetricFamily("queue_oldest_wait_seconds",
                                        "Seconds the queue's oldest waiting job has waited (0: none waits).",
                                        labels=["queue"])
        for p in probes:
            wait_family.add_metric([p.name], float(p.oldest_wait or 0.0))
        families: list[Metric] = [*gauges.values(), limit_family, wait_family]
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
        families.append(GaugeMetricFamily("jobs_stuck", "Jobs processing longer than thresholds.stuck_after.",
                                          value=float(stuck_count(started, read.now, self.settings.stuck_after))))
        return families


def stuck_count(started_at: list[bytes | str], now: float, stuck_after: float) -> int:
    """How many of these RQ `started_at` stamps are older than `stuck_after` seconds."""
    n = 0
    for raw in started_at:
        text = _text(raw)
        if not text:
            continue
        try:
            n += now - utcparse(text).timestamp() > stuck_after
        except ValueError:
            continue
    return n


def _counter(name: str, doc: str, labels: list[str], raw: Mapping[bytes, bytes]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for field, value in sorted(raw.items()):
        values = labels_of(field)
        if len(values) == len(labels):
            family.add_metric(values, float(value))
    return family


def _histogram(raw: Mapping[bytes, bytes]) -> HistogramMetricFamily:
    """Cumulative buckets from the per-bucket counts stored by `record_metrics`."""
    per_type: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        values = labels_of(field)
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
