"""Algorithms: what one check means. Each takes the queue, its configured limit and a member id
and returns a Decision; the storage does the atomic part.

`MovingWindow` (the default) runs our Lua script: exact moving window, one round trip whether
the hit is admitted or not, the Redis server's clock, the run-time override read in the same
script. `LimitsMovingWindow` uses the `limits` library's Redis moving window instead; it is kept
to measure against (bench/ratelimit_accuracy.py --strategy limits): it needs a second round trip
to learn when a slot opens, uses each client's clock, and keys its window by the limit's amount,
so a limit changed at run time starts an empty window.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis

from jobengine import keys
from jobengine.ratelimit.limit import LimitTable, RateLimit
from jobengine.ratelimit.storage import UNLIMITED, Decision, RedisWindowStorage


class Strategy(Protocol):
    name: str

    def hit(self, queue: str, configured: RateLimit | None, member: str) -> Decision:
        """Admit and record one hit on `queue`, or say how long until a slot opens."""
        ...


class MovingWindow:
    """At most N hits in any 60 s, exact, via `moving_window.lua` (the default)."""

    name = "moving-window"

    def __init__(self, storage: RedisWindowStorage) -> None:
        self.storage = storage

    def hit(self, queue: str, configured: RateLimit | None, member: str) -> Decision:
        amount = configured.amount if configured is not None else None
        period = configured.period if configured is not None else 60.0
        return self.storage.acquire(queue, amount, member, period)


class LimitsMovingWindow:
    """The `limits` library's Redis moving window (for comparison; see the module docstring)."""

    name = "limits"

    def __init__(self, connection: redis.Redis, table: LimitTable) -> None:
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self.table = table
        self.storage = RedisStorage("redis://", connection_pool=connection.connection_pool,
                                    key_prefix=f"{keys.PREFIX}:limits")
        self.limiter = MovingWindowRateLimiter(self.storage)

    def hit(self, queue: str, configured: RateLimit | None, member: str) -> Decision:
        from limits import RateLimitItemPerMinute

        limit = self.table.effective(queue)  # the override, at most max_age seconds old
        if limit is None:
            return UNLIMITED
        item = RateLimitItemPerMinute(limit.amount)
        if self.limiter.hit(item, queue):
            return Decision(True, limit.amount, 0)
        stats = self.limiter.get_window_stats(item, queue)  # second round trip
        return Decision(False, limit.amount, limit.amount - stats.remaining,
                        max(0.001, stats.reset_time - time.time()))
