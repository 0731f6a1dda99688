"""Retry strategies return decisions; the policy picks one by the exception's class (MRO)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobengine.config import Settings
from jobengine.errors import ConfigError, ResourceError, TemporaryError
from jobengine.retry import ExponentialBackoff, LinearBackoff, NoRetry, RetryPolicy


class SlowUpstream(TemporaryError):
    pass


class Throttled(TemporaryError):
    pass


def test_exponential_doubles_then_gives_up() -> None:
    strategy = ExponentialBackoff(base=2, factor=2, jitter=0, max_attempts=5)
    assert [strategy.decide(n).delay for n in range(1, 5)] == [2, 4, 8, 16]
    final = strategy.decide(5)
    assert not final.retry and "5 of 5" in final.reason


def test_exponential_is_capped() -> None:
    strategy = ExponentialBackoff(base=10, factor=10, max_delay=300, jitter=0, max_attempts=10)
    assert [strategy.decide(n).delay for n in (1, 2, 3, 4)] == [10, 100, 300, 300]


@given(attempt=st.integers(min_value=1, max_value=8), jitter=st.floats(min_value=0, max_value=0.5),
       seed=st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_within_bounds(attempt: int, jitter: float, seed: int) -> None:
    strategy = ExponentialBackoff(base=2, factor=2, max_delay=100, jitter=jitter, max_attempts=10,
                                  rng=random.Random(seed))
    exact = min(100, 2 * 2 ** (attempt - 1))
    delay = strategy.decide(attempt).delay
    assert exact * (1 - jitter) - 1e-9 <= delay <= min(100, exact * (1 + jitter)) + 1e-9


def test_linear_steps() -> None:
    strategy = LinearBackoff(step=30, max_attempts=4)
    assert [strategy.decide(n).delay for n in (1, 2, 3)] == [30, 60, 90]
    assert not strategy.decide(4).retry


@pytest.mark.parametrize("kwargs", [{"jitter": 1.5}, {"max_attempts": 0}, {"base": -1}])
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackoff(**kwargs)  # type: ignore[arg-type]


def test_most_specific_class_wins() -> None:
    exponential, linear = ExponentialBackoff(jitter=0), LinearBackoff()
    policy = RetryPolicy({TemporaryError: exponential, Throttled: linear, ResourceError: linear})
    assert policy.strategy_for(Throttled("429")) is linear
    assert policy.strategy_for(SlowUpstream("slow")) is exponential  # inherits TemporaryError's
    assert policy.strategy_for(ResourceError()) is linear
    assert isinstance(policy.strategy_for(ValueError()), NoRetry)
    assert policy.decide(SlowUpstream(), 1).delay == 2


def test_dotted_names_and_defaults_from_settings() -> None:
    settings = Settings.load(env={}, retry_map={"builtins.KeyError": "linear", "jobengine.errors:TemporaryError":
                                                "exponential"}, linear_step=5)
    policy = RetryPolicy.from_settings(settings)
    assert policy.decide(KeyError("k"), 2).delay == 10
    assert policy.strategy_for(TemporaryError()).name == "exponential"
    assert policy.strategy_for(ResourceError()).name == "none"  # not in this mapping
    default = RetryPolicy.from_settings(Settings.load(env={}))
    assert default.strategy_for(ResourceError()).name == "linear"
    assert default.strategy_for(TemporaryError()).name == "exponential"
    assert default.strategy_for(RuntimeError()).name == "none"


def test_strategy_for_a_stored_class_name() -> None:
    policy = RetryPolicy.from_settings(Settings.load(env={}))
    assert policy.strategy_for_name("jobengine.errors.TemporaryError").name == "exponential"
    assert policy.strategy_for_name("ValueError").name == "none"
    assert policy.strategy_for_name("gone.module.Vanished").name == "none"


def test_bad_dotted_name_is_a_config_error() -> None:
    policy = RetryPolicy({"no.such.module.Error": LinearBackoff()})
    with pytest.raises(ConfigError, match="'no.such.module.Error' does not import"):
        policy.strategy_for(ValueError())
    with pytest.raises(ConfigError, match="is not an exception class"):
        RetryPolicy({"jobengine.config.Settings": LinearBackoff()}).strategy_for(ValueError())


def test_bad_name_in_settings_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="myapp.Missing"):
        RetryPolicy.from_settings(Settings.load(env={}, retry_map={"myapp.Missing": "linear"}))
