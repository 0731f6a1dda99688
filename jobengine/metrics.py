"""Metrics: counters written with each job's bookkeeping, per-minute buckets (Redis only).

Written by `record_metrics` inside the pipeline that already carries a job's transition (no
round trip of its own), all in Redis, deployment-wide:

- `jobs.processed{type,queue,status}`: runs ended (finished, failed, retry, stopped);
- `jobs.failed{type,error}`: runs that raised (retried or final), by exception class;
- `jobs.duration{type}`: run time histogram (sum + buckets);
- `jobs.deferred{queue}`: rate-limit deferrals;
- time buckets for the console's sparklines, throughput chart and duration percentiles: a hash
  per minute (kept 7 h: the 1h and 6h windows) and per hour (kept 8 days: 24h and 7d), each
  holding `p:{queue}` finished, `f:{queue}` final failures and `d:{type}:{le}` runs per
  duration bucket (finished and failed runs). A window's read costs one HGETALL per bucket in
  one round trip, however many jobs ran (see `window_stats`);
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
from jobengine.models import DurationStats, ThroughputPoint, WindowStats
from jobengine.types import EventKind

BUCKET_TTL = 7 * 3600  # minute buckets outlive the 6h window the console shows
HOUR_TTL = 8 * 86400  # hour buckets outlive the 7d window
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
    seconds = 0.0
    if duration is not None:
        seconds = max(0.0, float(duration))
        pipe.hincrbyfloat(keys.METRICS_DURATION, _field(job_type, "sum"), seconds)
        pipe.hincrby(keys.METRICS_DURATION, _field(job_type, bucket_label(seconds)), 1)
    if kind in (EventKind.FAILED, EventKind.RETRY):
        error = str(details.get("error_class") or "unknown")
        pipe.hincrby(keys.METRICS_FAILED, _field(job_type, error), 1)
    if kind in (EventKind.FINISHED, EventKind.FAILED):
        stamp = now if now is not None else time.time()
        field = f"{'p' if kind is EventKind.FINISHED else 'f'}:{queue}"
        timing = f"d:{job_type}:{bucket_label(seconds)}" if duration is not None else None
        for bucket, ttl in ((keys.minute_bucket_key(int(stamp // 60)), BUCKET_TTL),
                            (keys.hour_bucket_key(int(stamp // 3600)), HOUR_TTL)):
            pipe.hincrby(bucket, field, 1)
            if timing is not None:
                pipe.hincrby(bucket, timing, 1)
            pipe.expire(bucket, ttl)
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


# ---- time windows (console: the throughput chart and the duration percentiles) -------------------

WINDOWS: dict[str, tuple[int, int]] = {"1h": (3600, 60), "6h": (6 * 3600, 300), "24h": (86400, 3600),
                                       "7d": (7 * 86400, 3600)}
"""Window -> (span, seconds per chart point). 1h and 6h read the minute buckets (60 and 360
HGETALLs, 6h summed per 5 minutes), 24h and 7d the hour buckets (24 and 168)."""


def quantile(q: float, counts: Mapping[str, int]) -> float | None:
    """The q-quantile of a duration histogram (bucket label -> runs), interpolated linearly in
    its bucket as Prometheus' histogram_quantile does; runs over the last bound count as that
    bound. None without runs."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank, running, lower = q * total, 0, 0.0
    for bound in DURATION_BUCKETS:
        n = counts.get(repr(bound), 0)
        if n and running + n >= rank:
            return lower + (bound - lower) * max(0.0, rank - running) / n
        running += n
        lower = bound
    return DURATION_BUCKETS[-1]


def durations_of(buckets: Sequence[Mapping[str, int]]) -> list[DurationStats]:
    """Runs, p50 and p95 per job type over `buckets` (their `d:{type}:{le}` fields), most runs first."""
    per_type: dict[str, dict[str, int]] = {}
    for bucket in buckets:
        for name, n in bucket.items():
            if name.startswith("d:"):
                job_type, _, le = name[2:].rpartition(":")
                counts = per_type.setdefault(job_type, {})
                counts[le] = counts.get(le, 0) + n
    stats = [DurationStats(t, sum(c.values()), quantile(0.5, c), quantile(0.95, c)) for t, c in per_type.items()]
    return sorted(stats, key=lambda d: (-d.runs, d.type))


def window_stats(connection: redis.Redis, window: str = "1h", now: float | None = None) -> WindowStats:
    """The throughput series and the duration percentiles per type of one window: one round trip
    of one HGETALL per bucket (60, 360, 24 or 168), whatever the number of jobs."""
    span, step = WINDOWS[window]
    stamp = now if now is not None else time.time()
    tier = 60 if step < 3600 else 3600
    key = keys.minute_bucket_key if tier == 60 else keys.hour_bucket_key
    last = int(stamp // step) * step  # points start on the clock's step boundaries
    starts = [last - (span // step - 1 - i) * step for i in range(span // step)]
    ids = list(range(starts[0] // tier, int(stamp // tier) + 1))
    with connection.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.hgetall(key(i))
        buckets = parse_buckets(pipe.execute())
    per = step // tier
    points = []
    for n, start in enumerate(starts):
        chunk = buckets[n * per:(n + 1) * per]
        points.append(ThroughputPoint(
            datetime.fromtimestamp(start, UTC),
            sum(v for b in chunk for f, v in b.items() if f.startswith("p:")),
            sum(v for b in chunk for f, v in b.items() if f.startswith("f:"))))
    return WindowStats(window=window, step=step, points=tuple(points), durations=tuple(durations_of(buckets)),
                       taken_at=datetime.fromtimestamp(stamp, UTC))


def minute_totals(connection: redis.Redis, queues: Sequence[str], minutes: int = 60,
                  now: float | None = None) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Queue -> (processed per minute, failed per minute) over the last `minutes` minutes."""
    ids = minute_ids(now if now is not None else time.time(), minutes)
    with connection.pipeline(transaction=False) as pipe:
        read_buckets(pipe, ids)
        buckets = parse_buckets(pipe.execute())
    return {q: (queue_series(buckets, q, "p"), queue_series(buckets, q, "f")) for q in queues}
