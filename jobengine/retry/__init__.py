"""Retry strategies (a registry: name -> class) and the policy that picks one by exception class."""

from jobengine.retry.policy import RetryPolicy, build_strategies, build_strategy, strategy_class
from jobengine.retry.strategies import (
    STRATEGIES,
    AbandonedRetry,
    ExponentialBackoff,
    FixedDelay,
    LinearBackoff,
    NoRetry,
    RetryDecision,
    RetryStrategy,
    register,
)

__all__ = ["STRATEGIES", "AbandonedRetry", "ExponentialBackoff", "FixedDelay", "LinearBackoff", "NoRetry",
           "RetryDecision", "RetryPolicy", "RetryStrategy", "build_strategies", "build_strategy", "register",
           "strategy_class"]
