"""The gate every worker class calls before running a job.

    limiter = RateLimiter.from_settings(connection, settings)
    wait = limiter.check("default", job.id)   # None: run it; else seconds until a slot opens

Queues with no limit (neither configured nor overridden, as seen at most `refresh` seconds ago)
cost nothing; a limited queue costs one round trip per check.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import redis

from jobengine.config import Settings
from jobengine.ratelimit.limit import LimitTable
from jobengine.ratelimit.storage import UNLIMITED, Decision, RedisWindowStorage
from jobengine.ratelimit.strategies import LimitsMovingWindow, MovingWindow, Strategy

STRATEGIES = ("moving-window", "limits")


class RateLimiter:
    """Per-queue jobs-per-minute limits enforced through Redis across every worker."""

    def __init__(self, connection: redis.Redis, configured: Mapping[str, int], *,
                 strategy: str | Strategy = "moving-window", refresh: float = 1.0) -> None:
        self.connection = connection
        self.table = LimitTable(connection, configured, max_age=refresh)
        self.storage = RedisWindowStorage(connection)
        if strategy == "moving-window":
            self.strategy: Strategy = MovingWindow(self.storage)
        elif strategy == "limits":
            self.strategy = LimitsMovingWindow(connection, self.table)
        elif isinstance(strategy, str):
            raise ValueError(f"unknown rate-limit strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        else:
            self.strategy = strategy
        self.last: dict[str, Decision] = {}

    @classmethod
    def from_settings(cls, connection: redis.Redis, settings: Settings, **kwargs: object) -> RateLimiter:
        return cls(connection, settings.limits, **kwargs)  # type: ignore[arg-type]

    def decide(self, queue: str, job_id: str = "") -> Decision:
        """Admit and record one job on `queue`, or say how long until a slot opens."""
        if self.table.effective(queue) is None:
            return UNLIMITED
        decision = self.strategy.hit(queue, self.table.configured(queue), job_id or uuid.uuid4().hex)
        self.last[queue] = decision
        return decision

    def check(self, queue: str, job_id: str = "") -> float | None:
        """None: run the job now (its slot is taken). Else: seconds until `queue` has a free slot."""
        decision = self.decide(queue, job_id)
        return None if decision.allowed else max(decision.wait, 0.001)

    def set_limit(self, queue: str, amount: int | None) -> None:
        """Override a queue's limit at run time (None: unlimited); every worker sees it at once."""
        self.table.set(queue, amount)

    def reset_limit(self, queue: str) -> bool:
        """Drop a run-time override; the configured limit applies again."""
        return self.table.reset(queue)
