"""Per-queue rate limits: the limit value (`limit`), the algorithm (`strategies`) and the
storage (`storage`, Redis + `moving_window.lua`) kept apart; `RateLimiter` is the gate."""

from jobengine.ratelimit.limit import OFF, LimitTable, QueueLimit, RateLimit, effective_limits, parse_overrides
from jobengine.ratelimit.limiter import STRATEGIES, RateLimiter
from jobengine.ratelimit.storage import Decision, RedisWindowStorage
from jobengine.ratelimit.strategies import LimitsMovingWindow, MovingWindow, Strategy

__all__ = ["OFF", "STRATEGIES", "Decision", "LimitTable", "LimitsMovingWindow", "MovingWindow", "QueueLimit",
           "RateLimit", "RateLimiter", "RedisWindowStorage", "Strategy", "effective_limits", "parse_overrides"]
