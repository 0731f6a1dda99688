"""Job bodies the worker benchmarks run, the same functions for every contender.

`touch` is the "small realistic" body: two Redis calls of its own (SETNX + INCR on the job's own
key), on a connection the job opens once per process from `BENCH_BODY_REDIS`. `stamp` records
when a job started next to when it was dispatched (bench/pickup_latency.py).
"""

from __future__ import annotations

import os
import time

import redis

BODY_REDIS = "BENCH_BODY_REDIS"
PICKED = "bench:picked"
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ[BODY_REDIS])
    return _client


def noop(n: int = 0) -> None:
    return None


def touch(n: int = 0) -> None:
    """Two Redis calls on the job's key: claim it once (SETNX), count the run (INCR)."""
    r = _redis()
    r.setnx(f"bench:body:{n}", 1)
    r.incr(f"bench:body:{n}:runs")


def stamp(sent: float, n: int = 0) -> None:
    """Push "<dispatched> <started>" (epoch seconds) for the pickup-latency bench."""
    started = time.time()
    _redis().rpush(PICKED, f"{sent:.6f} {started:.6f} {n}")


BODIES = {"noop": noop, "touch": touch}
