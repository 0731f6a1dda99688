"""Where moving windows live: one Redis sorted set per queue, checked and updated by the Lua
script `moving_window.lua` in a single round trip."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis

from jobengine import keys
from jobengine.ratelimit.limit import MINUTE


@dataclass(frozen=True)
class Decision:
    """The outcome of one check."""

    allowed: bool
    limit: int | None  # None: unlimited
    used: int  # hits in the current window (this one included when allowed)
    wait: float = 0.0  # seconds until a slot opens (0 when allowed)


UNLIMITED = Decision(True, None, 0)


@cache
def script_text(name: str = "moving_window.lua") -> str:
    return resources.files("jobengine.ratelimit").joinpath(name).read_text(encoding="utf-8")


def _num(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


class RedisWindowStorage:
    """Moving windows in Redis, with the run-time overrides read inside the same script."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._acquire = connection.register_script(script_text())

    def acquire(self, queue: str, configured: int | None, member: str, period: float = MINUTE) -> Decision:
        """Record a hit on `queue` if its window has room (EVALSHA: one round trip)."""
        allowed, limit, used, wait = self._acquire(
            keys=[keys.rate_window_key(queue), keys.RATE_LIMITS],
            args=[queue, -1 if configured is None else configured, period, member])
        limit = int(limit)
        return Decision(bool(allowed), None if limit < 0 else limit, int(used), _num(wait))

    @staticmethod
    def queue_usage(pipe: Any, queue: str, now: float, period: float = MINUTE) -> None:
        """Append the count of hits in `queue`'s current window to a pipeline (monitor, metrics)."""
        pipe.zcount(keys.rate_window_key(queue), f"({now - period}", "+inf")

    def clear(self, queue: str) -> None:
        """Forget `queue`'s window (tests and benchmarks)."""
        self.connection.delete(keys.rate_window_key(queue))
