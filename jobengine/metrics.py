"""Metrics: counters written with each job's bookkeeping, per-minute buckets (Redis only).

Written by `record_metrics` inside the pipeline that already carries a job's transition (no
round trip of its own), all in Redis, deployment-wide:

- `jobs.processed{type,queue,status}`: runs ended (finished, failed, retry, stopped);
- `jobs.failed{type,error}`: runs that raised (retried or final), by exception class;
- `jobs.duration{type}`: run time histogram (sum + buckets);
- `jobs.deferred{queue}`: rate-limit deferrals;
- per-minute buckets (`p:{queue}` finished, `f:{queue}` final failures), kept two hours, for
  the console's sparklines and throughput chart;
- the specification's `queue:{queue}:processed` (INCR, EXPIRE 3600).

`jobengine.exporter` exports them to Prometheus; this module does not import prometheus_client.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from jobengine import keys
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


def labels_of(field: bytes | str) -> list[str]:
    """The label values of a counter hash field (see `_field`); [] for garbage."""
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
