"""Time windows of the throughput chart and duration percentiles per job type (Redis buckets)."""

from __future__ import annotations

import random
import statistics

import pytest
import redis

from jobengine import Engine, JobSpec
from jobengine.errors import ValidationError
from jobengine.keys import hour_bucket_key, minute_bucket_key
from jobengine.metrics import BUCKET_TTL, DURATION_BUCKETS, HOUR_TTL, WINDOWS, quantile, record_metrics, window_stats
from jobengine.types import EventKind
from tests.engine import jobs
from tests.engine.helpers import run_until_idle

NOW = 1_741_960_800.0 + 30  # 2025-03-14 14:00:30 UTC, 30 s into an hour


def _run(conn: redis.Redis, at: float, job_type: str, seconds: float, *, failed: bool = False,
         queue: str = "default") -> None:
    with conn.pipeline() as pipe:
        record_metrics(pipe, EventKind.FAILED if failed else EventKind.FINISHED, queue,
                       {"type": job_type, "duration": seconds, "error_class": "E"}, now=at)
        pipe.execute()


def _bucket_of(seconds: float) -> tuple[float, float]:
    lower = 0.0
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            return lower, bound
        lower = bound
    return lower, float("inf")


def test_each_window_counts_what_ran_in_it_and_nothing_older(redis_conn: redis.Redis) -> None:
    # one run per (age, type): ages chosen on both sides of each window's edge
    ages = {"30s": 30, "50m": 3000, "2h": 7200, "5h": 5 * 3600, "7h": 7 * 3600, "20h": 20 * 3600,
            "3d": 3 * 86400, "8d": 8 * 86400}
    for age in ages.values():
        _run(redis_conn, NOW - age, "email", 0.2)
    _run(redis_conn, NOW - 60, "email", 0.2, failed=True, queue="high")
    expected = {"1h": 3, "6h": 5, "24h": 7, "7d": 8}  # the 8-day-old run is in no window
    for window, runs in expected.items():
        stats = window_stats(redis_conn, window, now=NOW)
        span, step = WINDOWS[window]
        assert stats.step == step and len(stats.points) == span // step
        assert sum(p.processed for p in stats.points) == runs - 1, window
        assert sum(p.failed for p in stats.points) == 1, window
        assert stats.durations[0].type == "email" and stats.durations[0].runs == runs, window
        starts = [p.minute.timestamp() for p in stats.points]
        assert starts == sorted(starts) and starts[-1] <= NOW < starts[-1] + step
        assert all(b - a == step for a, b in zip(starts, starts[1:], strict=False))


def test_six_hours_are_summed_per_five_minutes(redis_conn: redis.Redis) -> None:
    for minute in range(10):  # one run a minute over the last ten minutes
        _run(redis_conn, NOW - minute * 60, "report", 1.0)
    points = window_stats(redis_conn, "6h", now=NOW).points
    assert len(points) == 72
    assert [p.processed for p in points[-3:]] == [sum(1 for m in range(10) if NOW - m * 60 >= p.minute.timestamp()
                                                      and NOW - m * 60 < p.minute.timestamp() + 300)
                                                  for p in points[-3:]]
    assert sum(p.processed for p in points) == 10


def test_percentiles_land_in_the_bucket_of_the_true_percentile() -> None:
    rng = random.Random(7)
    for _ in range(20):
        values = [rng.lognormvariate(rng.uniform(-4, 3), rng.uniform(0.2, 2)) for _ in range(rng.randint(5, 500))]
        counts: dict[str, int] = {}
        for x in values:
            lower, bound = _bucket_of(x)
            label = repr(bound) if bound != float("inf") else "+Inf"
            counts[label] = counts.get(label, 0) + 1
        for q in (0.5, 0.95):
            true = statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]
            estimate = quantile(q, counts)
            assert estimate is not None
            lower, bound = _bucket_of(true)
            # the estimate interpolates inside a bucket: it is within the true value's bucket or an
            # adjacent one (the rank may fall on a bucket edge), never further
            edges = (0.0, *DURATION_BUCKETS)
            i = edges.index(lower)
            assert edges[max(0, i - 1)] <= estimate <= (edges[min(len(edges) - 1, i + 2)] if bound != float("inf")
                                                      else DURATION_BUCKETS[-1])


def test_percentiles_per_type_over_a_window(redis_conn: redis.Redis) -> None:
    for i in range(90):
        _run(redis_conn, NOW - i, "email", 0.03)
    for i in range(10):
        _run(redis_conn, NOW - i, "email", 4.0)
    _run(redis_conn, NOW, "image", 12.0)
    stats = window_stats(redis_conn, "1h", now=NOW)
    email, image = stats.durations
    assert (email.type, email.runs, image.type, image.runs) == ("email", 100, "image", 1)
    assert email.p50 is not None and 0.025 < email.p50 <= 0.05  # 90 % of the runs took 30 ms
    assert email.p95 is not None and 2.5 < email.p95 <= 5.0  # the slow tenth took 4 s
    assert image.p50 is not None and 10.0 < image.p50 <= 30.0
    assert quantile(0.5, {}) is None


def test_bucket_expiry_covers_the_windows(redis_conn: redis.Redis) -> None:
    _run(redis_conn, NOW, "email", 0.2)
    assert BUCKET_TTL >= 6 * 3600 + 60 and HOUR_TTL >= 7 * 86400 + 3600
    minute_ttl = redis_conn.ttl(minute_bucket_key(int(NOW // 60)))
    hour_ttl = redis_conn.ttl(hour_bucket_key(int(NOW // 3600)))
    assert BUCKET_TTL - 5 < minute_ttl <= BUCKET_TTL and HOUR_TTL - 5 < hour_ttl <= HOUR_TTL
    fields = redis_conn.hgetall(minute_bucket_key(int(NOW // 60)))
    assert fields == {b"p:default": b"1", b"d:email:0.25": b"1"}


def test_engine_throughput_from_real_runs(fast_engine: Engine) -> None:
    fast_engine.dispatch_many([JobSpec(jobs.add, (i, 1), type="sum") for i in range(6)]
                              + [JobSpec(jobs.sleepy, (0.06,), type="nap") for _ in range(2)]
                              + [JobSpec(jobs.broken, (1,), type="sum")])
    run_until_idle(fast_engine)
    for window in WINDOWS:
        stats = fast_engine.throughput(window)
        assert stats.window == window
        assert sum(p.processed for p in stats.points) == 8 and sum(p.failed for p in stats.points) == 1
        by_type = {d.type: d for d in stats.durations}
        assert by_type["sum"].runs == 7 and by_type["nap"].runs == 2
        assert by_type["nap"].p50 is not None and 0.05 < by_type["nap"].p50 <= 0.1
    with pytest.raises(ValidationError, match="window"):
        fast_engine.throughput("2h")
