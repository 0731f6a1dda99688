"""Retry strategies and the policy that picks one by exception class."""

from jobengine.retry.policy import RetryPolicy
from jobengine.retry.strategies import ExponentialBackoff, LinearBackoff, NoRetry, RetryDecision, RetryStrategy

__all__ = ["ExponentialBackoff", "LinearBackoff", "NoRetry", "RetryDecision", "RetryPolicy", "RetryStrategy"]
