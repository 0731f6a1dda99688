"""Retry strategies. Each turns the number of a failed attempt into a RetryDecision; none of them acts.

`STRATEGIES` maps a name to a class; `@register` adds one (under its `name`), and `[retry.<name>]`
builds it as `cls(**params)`. A new strategy is one registered class here. Strategies are immutable
and safe to share between threads (the jitter RNG aside, which only ever draws one number at a time).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable


@dataclass(frozen=True)
class RetryDecision:
    """Retry after `delay` seconds, or give up (`reason` says why)."""

    retry: bool
    delay: float = 0.0
    strategy: str = "none"
    reason: str = ""

    @classmethod
    def give_up(cls, strategy: str, reason: str) -> RetryDecision:
        return cls(retry=False, delay=0.0, strategy=strategy, reason=reason)

    @classmethod
    def after(cls, delay: float, strategy: str) -> RetryDecision:
        if not (math.isfinite(delay) and delay >= 0):
            raise ValueError(f"retry delay must be a finite number >= 0, got {delay!r}")
        return cls(retry=True, delay=delay, strategy=strategy)


@runtime_checkable
class RetryStrategy(Protocol):
    """Anything with a `name` and a `decide(attempt)` returning a RetryDecision."""

    name: str

    def decide(self, attempt: int) -> RetryDecision:
        """`attempt` is the number of the run that just failed (1 for the first run)."""
        ...


S = TypeVar("S", bound=type)

STRATEGIES: dict[str, type] = {}
"""name -> strategy class; `[retry.<name>]` tables and `retry.strategies` values name these."""


def register(cls: S) -> S:
    """Class decorator: make `cls` buildable by its `name` from the configuration."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    STRATEGIES[name] = cls
    return cls


# ---- argument checks (one-line ValueErrors) ------------------------------------------------
def _number(name: str, value: float, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def _max_attempts(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {value!r}")
    return value


def _attempt(attempt: int) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an integer >= 1 (1 is the first run), got {attempt!r}")
    return attempt


def _exhausted(strategy: str, attempt: int, max_attempts: int) -> RetryDecision:
    return RetryDecision.give_up(strategy, f"{attempt} of {max_attempts} attempts used")


# ---- strategies ----------------------------------------------------------------------------
@register
@dataclass(frozen=True)
class ExponentialBackoff:
    """delay = min(max_delay, base * factor ** (attempt - 1)), times a uniform factor in
    [1 - jitter, 1 + jitter], capped at max_delay again. At most `max_attempts` runs in total."""

    base: float = 2.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.1
    max_attempts: int = 5
    rng: random.Random | None = field(default=None, repr=False, compare=False, metadata={"config": False})
    _rng: random.Random = field(init=False, repr=False, compare=False)

    name = "exponential"

    def __post_init__(self) -> None:
        for attr in ("base", "factor", "max_delay"):
            object.__setattr__(self, attr, _number(attr, getattr(self, attr)))
        jitter = _number("jitter", self.jitter)
        if jitter >= 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        object.__setattr__(self, "jitter", jitter)
        _max_attempts(self.max_attempts)
        object.__setattr__(self, "_rng", self.rng if self.rng is not None else random.Random())

    def delay_for(self, attempt: int) -> float:
        """The delay before retrying failed attempt `attempt`, before jitter."""
        if self.base == 0:
            return 0.0
        try:
            return min(self.max_delay, self.base * self.factor ** (_attempt(attempt) - 1))
        except OverflowError:  # float ** int overflows long before any sane attempt count matters
            return self.max_delay

    def decide(self, attempt: int) -> RetryDecision:
        if _attempt(attempt) >= self.max_attempts:
            return _exhausted(self.name, attempt, self.max_attempts)
        delay = self.delay_for(attempt)
        if self.jitter:
            delay = min(self.max_delay, delay * self._rng.uniform(1 - self.jitter, 1 + self.jitter))
        return RetryDecision.after(delay, self.name)


@register
@dataclass(frozen=True)
class LinearBackoff:
    """delay = step * attempt. At most `max_attempts` runs in total."""

    step: float = 30.0
    max_attempts: int = 5

    name = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "step", _number("step", self.step))
        _max_attempts(self.max_attempts)

    def decide(self, attempt: int) -> RetryDecision:
        if _attempt(attempt) >= self.max_attempts:
            return _exhausted(self.name, attempt, self.max_attempts)
        return RetryDecision.after(self.step * attempt, self.name)


@register
@dataclass(frozen=True)
class NoRetry:
    """Never retries."""

    name = "none"

    def decide(self, attempt: int) -> RetryDecision:
        _attempt(attempt)
        return RetryDecision.give_up(self.name, "this exception is not retried")


@register
@dataclass(frozen=True)
class FixedDelay:
    """A constant delay (`delay = 10`) or one per retry (`delay = [10, 30, 60]`, like RQ's
    `Retry(interval=[...])`), the last repeating. At most `max_attempts` runs in total."""

    delay: float | Sequence[float] = 10.0
    max_attempts: int = 5
    delays: tuple[float, ...] = field(init=False, repr=False, compare=False)

    name = "fixed"

    def __post_init__(self) -> None:
        if isinstance(self.delay, Sequence) and not isinstance(self.delay, str):
            if not self.delay:
                raise ValueError("delay must be a number or a non-empty list of numbers, got []")
            delays = tuple(_number(f"delay[{i}]", d) for i, d in enumerate(self.delay))
            object.__setattr__(self, "delay", delays)
        else:
            delays = (_number("delay", self.delay),)
            object.__setattr__(self, "delay", delays[0])
        object.__setattr__(self, "delays", delays)
        _max_attempts(self.max_attempts)

    def decide(self, attempt: int) -> RetryDecision:
        if _attempt(attempt) >= self.max_attempts:
            return _exhausted(self.name, attempt, self.max_attempts)
        return RetryDecision.after(self.delays[min(attempt, len(self.delays)) - 1], self.name)


@register
@dataclass(frozen=True)
class AbandonedRetry(FixedDelay):
    """For a job whose worker died while running it (SIGKILL, OOM, a lost host): `attempt` counts
    its abandonments. Default: straight back to the front of its queue, and the third abandonment
    is a final failure (a poison job that keeps killing workers stops there). `[retry.abandoned]`
    sets `delay` / `max_attempts`, or `class = "exponential"` (etc.) with that class's keys."""

    delay: float | Sequence[float] = 0.0
    max_attempts: int = 3

    name = "abandoned"
