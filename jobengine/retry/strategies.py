"""Retry strategies. Each returns a RetryDecision for a failed attempt; none of them acts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RetryDecision:
    """Retry after `delay` seconds, or give up."""

    retry: bool
    delay: float = 0.0
    strategy: str = "none"
    reason: str = ""

    @classmethod
    def give_up(cls, strategy: str, reason: str) -> RetryDecision:
        return cls(False, 0.0, strategy, reason)

    @classmethod
    def after(cls, delay: float, strategy: str) -> RetryDecision:
        return cls(True, delay, strategy, "")


class RetryStrategy(Protocol):
    name: str

    def decide(self, attempt: int) -> RetryDecision:
        """`attempt` is the number of the run that just failed (1 for the first run)."""
        ...


def _check(name: str, value: float, minimum: float = 0.0) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class ExponentialBackoff:
    """delay = min(max_delay, base * factor ** (attempt - 1)), times a uniform jitter factor."""

    name = "exponential"

    def __init__(self, base: float = 2.0, factor: float = 2.0, max_delay: float = 3600.0,
                 jitter: float = 0.1, max_attempts: int = 5, rng: random.Random | None = None) -> None:
        _check("base", base)
        _check("factor", factor, 1.0)
        _check("max_delay", max_delay)
        _check("max_attempts", max_attempts, 1)
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.base, self.factor, self.max_delay = base, factor, max_delay
        self.jitter, self.max_attempts = jitter, max_attempts
        self.rng = rng or random.Random()

    def decide(self, attempt: int) -> RetryDecision:
        if attempt >= self.max_attempts:
            return RetryDecision.give_up(self.name, f"{attempt} of {self.max_attempts} attempts used")
        delay = min(self.max_delay, self.base * self.factor ** (attempt - 1))
        if self.jitter:
            delay *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        return RetryDecision.after(min(self.max_delay, delay), self.name)


class LinearBackoff:
    """delay = step * attempt."""

    name = "linear"

    def __init__(self, step: float = 30.0, max_attempts: int = 5) -> None:
        _check("step", step)
        _check("max_attempts", max_attempts, 1)
        self.step, self.max_attempts = step, max_attempts

    def decide(self, attempt: int) -> RetryDecision:
        if attempt >= self.max_attempts:
            return RetryDecision.give_up(self.name, f"{attempt} of {self.max_attempts} attempts used")
        return RetryDecision.after(self.step * attempt, self.name)


class NoRetry:
    """Never retries."""

    name = "none"

    def decide(self, attempt: int) -> RetryDecision:
        return RetryDecision.give_up(self.name, "this exception is not retried")
