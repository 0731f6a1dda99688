"""The limit value and where it comes from: `[limits]` in the configuration, overridden at run
time by `jobtui limit QUEUE N` (a Redis hash every worker reads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from jobengine import keys

MINUTE = 60.0
OFF = "off"


@dataclass(frozen=True)
class RateLimit:
    """At most `amount` jobs per `period` seconds (queue limits are per minute)."""

    amount: int
    period: float = MINUTE

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"a rate limit needs amount >= 0, got {self.amount}")
        if self.period <= 0:
            raise ValueError(f"a rate limit needs period > 0, got {self.period}")

    def __str__(self) -> str:
        unit = "min" if self.period == MINUTE else f"{self.period:g}s"
        return f"{self.amount}/{unit}"


@dataclass(frozen=True)
class QueueLimit:
    """One queue's limits as `jobtui limit` lists them."""

    queue: str
    configured: RateLimit | None
    override: RateLimit | None
    override_set: bool  # an override exists (None with override_set means "off")

    @property
    def effective(self) -> RateLimit | None:
        configured = {self.queue: self.configured} if self.configured is not None else {}
        return effective_limits(configured, {self.queue: self.override} if self.override_set else {}).get(self.queue)


def parse_override(raw: bytes | str | None) -> tuple[bool, RateLimit | None]:
    """(override set?, limit) from a RATE_LIMITS hash value; "off" is set and unlimited."""
    if raw is None:
        return False, None
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == OFF:
        return True, None
    try:
        return True, RateLimit(int(text))
    except ValueError:
        return False, None  # garbage in the hash: ignore it, like the Lua check does


def parse_overrides(raw: Mapping[Any, Any]) -> dict[str, RateLimit | None]:
    """Queue -> override (None means "off") from the RATE_LIMITS hash as HGETALL returns it."""
    parsed = {(k.decode() if isinstance(k, bytes) else k): parse_override(v) for k, v in raw.items()}
    return {q: limit for q, (is_set, limit) in parsed.items() if is_set}


def effective_limits(configured: Mapping[str, int] | Mapping[str, RateLimit],
                     overrides: Mapping[str, RateLimit | None]) -> dict[str, RateLimit | None]:
    """Queue -> effective limit: a run-time override (None: "off") wins over the configured one.

    The one merge rule: the gate, `jobtui limit`, the monitor and the Prometheus scrape use it."""
    merged: dict[str, RateLimit | None] = {
        q: v if isinstance(v, RateLimit) else RateLimit(v) for q, v in configured.items()}
    merged.update(overrides)
    return merged


class LimitTable:
    """Effective per-queue limits: a run-time override in Redis wins over the configuration.

    `effective()` reads the overrides through a small in-process cache (`max_age` seconds), so
    the gate can skip the round trip for queues that have no limit at all; the Lua check itself
    always reads the current override.
    """

    def __init__(self, connection: redis.Redis, configured: Mapping[str, int], *, max_age: float = 1.0) -> None:
        self.connection = connection
        self._configured = {q: RateLimit(n) for q, n in configured.items()}
        self.max_age = max_age
        self._lock = threading.Lock()
        self._overrides: dict[str, RateLimit | None] = {}
        self._effective: dict[str, RateLimit | None] = dict(self._configured)
        self._read_at = float("-inf")

    def configured(self, queue: str) -> RateLimit | None:
        return self._configured.get(queue)

    def _read(self, fresh: bool) -> None:
        with self._lock:
            if fresh or time.monotonic() - self._read_at >= self.max_age:
                self._overrides = parse_overrides(self.connection.hgetall(keys.RATE_LIMITS))
                self._effective = effective_limits(self._configured, self._overrides)
                self._read_at = time.monotonic()

    def overrides(self, *, fresh: bool = False) -> dict[str, RateLimit | None]:
        """Queue -> override (None means "off"), at most `max_age` seconds old unless `fresh`."""
        self._read(fresh)
        return dict(self._overrides)

    def effective(self, queue: str, *, fresh: bool = False) -> RateLimit | None:
        self._read(fresh)
        return self._effective.get(queue)

    def describe(self, queues: tuple[str, ...] | list[str] = ()) -> list[QueueLimit]:
        """`queues` plus every queue with a configured or overridden limit, current values."""
        overrides = self.overrides(fresh=True)
        names = list(dict.fromkeys([*queues, *self._configured, *overrides]))
        return [QueueLimit(q, self._configured.get(q), overrides.get(q), q in overrides) for q in names]

    def set(self, queue: str, amount: int | None) -> None:
        """Override `queue`'s limit at run time: N jobs per minute, or None for unlimited."""
        if not queue:
            raise ValueError("queue name is empty")
        if amount is not None and amount < 0:
            raise ValueError(f"limit must be >= 0, got {amount}")
        self.connection.hset(keys.RATE_LIMITS, queue, OFF if amount is None else str(amount))
        self._read_at = float("-inf")

    def reset(self, queue: str) -> bool:
        """Drop the override: the configured limit (or none) applies again. False if none was set."""
        self._read_at = float("-inf")
        return bool(self.connection.hdel(keys.RATE_LIMITS, queue))
