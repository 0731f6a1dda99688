"""Pickup latency: dispatch -> job start, for our worker, bare RQ and huey in the same run.

Each contender runs one worker process of its own (bench/contenders.py, `--serve`), started and
waiting before anything is measured. The job (bench/jobs.py `stamp`) pushes the time it started
next to the time the producer took just before its dispatch call, so the latency includes what
the dispatch call does before the job is on its queue (for ours: the Redis pipeline; the
PostgreSQL row is written after it, before the call returns, so the job may start first). The
dispatch call's own duration is printed beside it.

- idle: `--jobs` jobs (default 500) one at a time, each dispatched once the previous one has
  started and after a pause of 1-5 ms, so the worker waits idle (ours and RQ: BLPOP, huey:
  BRPOP) every time;
- critical behind a deep low lane: `--low` no-op jobs (default 20,000) queued on the low lane
  first; while the worker drains them, `--critical` jobs (default 200) on the critical lane, one
  at a time every 5-15 ms (measured only while the low lane still holds at least 10% of
  them). RQ listens to its queues in lane order; huey uses `PriorityRedisHuey` (its priority
  feature: one sorted set, BZPOPMIN) with the low jobs at priority 0 and the critical ones at 30.

Prints p50/p99/max per contender and scenario, against the targets (p99 <= 5 ms idle, <= 20 ms
for the critical job).

    python -m bench.pickup_latency --own-redis
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench import jobs as bodies
from bench.common import parser, scratch_database
from bench.contenders import LANES, Children, enqueue, huey_app, reset, settings_for
from bench.worker_throughput import given_redis, own_redis
from jobengine import Engine, JobSpec

TARGETS = {"idle": 0.005, "critical": 0.020}


Send = Callable[[float, int], object]


def dispatcher(contender: str, redis_url: str, database_url: str, priority: str) -> tuple[Send, Callable[[], None]]:
    """A function dispatching one `stamp(sent, n)` job on `priority`'s lane, and a closer."""
    if contender == "ours":
        engine = Engine(settings_for(redis_url, database_url), migrate=False)
        return (lambda sent, n: engine.dispatch_many([JobSpec(bodies.stamp, (sent, n), priority=priority)]),
                engine.close)
    if contender == "rq":
        from rq import Queue

        queue = Queue(LANES[priority][0], connection=redis.Redis.from_url(redis_url))
        return lambda sent, n: queue.enqueue(bodies.stamp, sent, n, result_ttl=500), lambda: None
    app, tasks = huey_app(redis_url, priority=priority == "critical")
    if priority == "critical":
        return lambda sent, n: tasks["stamp"](sent, n, priority=30), app.storage.pool.disconnect
    return lambda sent, n: tasks["stamp"](sent, n), app.storage.pool.disconnect


def timed(send: Send, n: int) -> float:
    """Dispatch job `n`; the time its dispatch call returned (epoch seconds)."""
    send(time.time(), n)
    return time.time()


def picked(conn: redis.Redis, n: int, returned: float, timeout: float = 10.0) -> tuple[float, float]:
    """Wait for job `n`'s stamp: (dispatch -> start, the dispatch call's duration) in seconds."""
    got = conn.blpop([bodies.PICKED], timeout=timeout)
    if got is None:
        raise SystemExit(f"job {n} was not picked up within {timeout:g} s")
    raw = got[1]
    sent, started, number = (raw.decode() if isinstance(raw, bytes) else raw).split()
    if int(number) != n:
        raise SystemExit(f"picked job {number}, expected {n}")
    return float(started) - float(sent), returned - float(sent)


Lags = list[tuple[float, float]]


def idle(contender: str, conn: redis.Redis, redis_url: str, database_url: str, tmp: Path, count: int) -> Lags:
    reset(conn, database_url)
    workers = Children(contender, 1, redis_url, database_url, tmp, serve=True)
    send, close = dispatcher(contender, redis_url, database_url, "normal")
    lags = []
    try:
        workers.go()
        time.sleep(0.3)
        for n in range(count + 10):  # the first 10 warm up (imports, prepared scripts)
            time.sleep(random.uniform(0.001, 0.005))
            lag = picked(conn, n, timed(send, n))
            if n >= 10:
                lags.append(lag)
    finally:
        close()
        workers.stop()
        workers.wait(timeout=60)
    return lags


def critical(contender: str, conn: redis.Redis, redis_url: str, database_url: str, tmp: Path, low: int,
             count: int) -> tuple[Lags, int]:
    """Latencies of critical jobs while the low lane drains; and how many low jobs were left at the end."""
    reset(conn, database_url)
    enqueue(contender, redis_url, database_url, "noop", low, priority="low")
    workers = Children(contender, 1, redis_url, database_url, tmp, serve=True, priority=contender == "huey")
    send, close = dispatcher(contender, redis_url, database_url, "critical")
    depth = (lambda: conn.zcard("huey.redis.jobtuibench")) if contender == "huey" else \
        (lambda: conn.llen(f"rq:queue:{LANES['low'][0]}"))
    lags: Lags = []
    try:
        workers.go()
        time.sleep(0.2)  # draining
        for n in range(count):
            if depth() < low // 10:
                break
            time.sleep(random.uniform(0.005, 0.015))
            lags.append(picked(conn, n, timed(send, n)))
        left = depth()
    finally:
        close()
        workers.stop()
        workers.wait(timeout=120)
    return lags, left


def describe(lags: Lags, target: float) -> str:
    """Percentiles of dispatch -> start (judged against `target`), and of the dispatch call."""
    if len(lags) < 2:
        return "no sample (the low lane drained first)"
    q = statistics.quantiles([a for a, _ in lags], n=100, method="inclusive")
    r = statistics.quantiles([b for _, b in lags], n=100, method="inclusive")
    verdict = "meets" if q[98] <= target else "MISSES"
    return (f"p50 {q[49] * 1000:6.2f} ms  p99 {q[98] * 1000:6.2f} ms  max {max(a for a, _ in lags) * 1000:7.2f} ms "
            f"({verdict} p99 <= {target * 1000:g} ms); the dispatch call: p50 {r[49] * 1000:5.2f} ms "
            f"p99 {r[98] * 1000:6.2f} ms; {len(lags)} jobs")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=500, help="idle: jobs measured")
    p.add_argument("--low", type=int, default=20000, help="critical: depth of the low lane")
    p.add_argument("--critical", type=int, default=200, help="critical: jobs measured")
    p.add_argument("--contenders", default="ours,rq,huey")
    p.add_argument("--own-redis", action="store_true", help="Run against a private redis-server.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    contenders = args.contenders.split(",")
    with (own_redis() if args.own_redis else given_redis(args.redis_url)) as redis_url, \
            scratch_database(args.pg_url) as database_url, tempfile.TemporaryDirectory() as folder:
        os.environ[bodies.BODY_REDIS] = redis_url
        Engine(settings_for(redis_url, database_url)).close()  # migrate once
        conn = redis.Redis.from_url(redis_url)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        results: dict[str, dict[str, str]] = {}
        for c in contenders:
            results[c] = {"idle": describe(idle(c, conn, redis_url, database_url, Path(folder), args.jobs),
                                           TARGETS["idle"])}
        for c in contenders:
            lags, left = critical(c, conn, redis_url, database_url, Path(folder), args.low, args.critical)
            results[c]["critical"] = describe(lags, TARGETS["critical"]) + f"; {left:,} low jobs still queued"
        conn.flushdb()
    names = {"ours": "jobtui FastWorker", "rq": "bare RQ SimpleWorker", "huey": "huey (1 thread)"}
    print("idle worker, dispatch -> start:")
    for c in contenders:
        print(f"  {names[c]:22} {results[c]['idle']}")
    print(f"critical job while a low lane of {args.low:,} drains (huey: PriorityRedisHuey priorities):")
    for c in contenders:
        print(f"  {names[c]:22} {results[c]['critical']}")


if __name__ == "__main__":
    main()
