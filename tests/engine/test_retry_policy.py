"""Retry strategies return decisions; the policy picks one by the exception's class (MRO). Pure: no servers."""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import weakref
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobengine.config import Settings
from jobengine.errors import ConfigError, ResourceError, TemporaryError
from jobengine.retry import (
    STRATEGIES,
    ExponentialBackoff,
    FixedDelay,
    LinearBackoff,
    NoRetry,
    RetryDecision,
    RetryPolicy,
    RetryStrategy,
    build_strategies,
    build_strategy,
    register,
)


class SlowUpstream(TemporaryError):
    pass


class Throttled(TemporaryError):
    pass


class Contended(ResourceError, TemporaryError):
    """Both: ResourceError comes first in the MRO."""


class Outer:
    class Nested(Exception):
        pass


class Fixed:
    """A user-supplied strategy: anything with `name` and `decide`."""

    name = "seven"

    def decide(self, attempt: int) -> RetryDecision:
        return RetryDecision.after(7.0, self.name)


class Halving:
    """A user strategy class named by a dotted path in the configuration."""

    name = "halving"

    def __init__(self, start: float, max_attempts: int = 3) -> None:
        if start <= 0:
            raise ValueError(f"start must be > 0, got {start!r}")
        self.start, self.max_attempts = start, max_attempts

    def decide(self, attempt: int) -> RetryDecision:
        if attempt >= self.max_attempts:
            return RetryDecision.give_up(self.name, "enough")
        return RetryDecision.after(self.start / 2 ** (attempt - 1), self.name)


# ---- decisions -----------------------------------------------------------------------------
def test_decision_constructors() -> None:
    assert RetryDecision.after(3.5, "linear") == RetryDecision(True, 3.5, "linear", "")
    assert RetryDecision.give_up("none", "why") == RetryDecision(False, 0.0, "none", "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryDecision.after(1, "x").delay = 2  # type: ignore[misc]
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="delay"):
            RetryDecision.after(bad, "x")


# ---- exponential ---------------------------------------------------------------------------
def test_exponential_doubles_then_gives_up() -> None:
    strategy = ExponentialBackoff(base=2, factor=2, jitter=0, max_attempts=5)
    decisions = [strategy.decide(n) for n in range(1, 5)]
    assert [d.delay for d in decisions] == [2, 4, 8, 16]
    assert all(d.retry and d.strategy == "exponential" for d in decisions)
    final = strategy.decide(5)
    assert not final.retry and final.delay == 0 and final.strategy == "exponential" and "5 of 5" in final.reason
    assert not strategy.decide(6).retry


def test_exponential_is_capped() -> None:
    strategy = ExponentialBackoff(base=10, factor=10, max_delay=300, jitter=0, max_attempts=10)
    assert [strategy.decide(n).delay for n in (1, 2, 3, 4)] == [10, 100, 300, 300]


def test_exponential_does_not_overflow_on_huge_attempts() -> None:
    strategy = ExponentialBackoff(jitter=0.5, max_attempts=100_000)
    assert strategy.decide(5_000).delay <= 3600
    assert ExponentialBackoff(jitter=0, max_attempts=100_000).decide(5_000).delay == 3600
    assert ExponentialBackoff(base=0, jitter=0, max_attempts=100_000).decide(5_000).delay == 0


def test_one_attempt_means_no_retry() -> None:
    assert not ExponentialBackoff(max_attempts=1).decide(1).retry
    assert not LinearBackoff(max_attempts=1).decide(1).retry


@given(attempt=st.integers(min_value=1, max_value=12), jitter=st.floats(min_value=0, max_value=0.99),
       seed=st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_within_bounds(attempt: int, jitter: float, seed: int) -> None:
    strategy = ExponentialBackoff(base=2, factor=2, max_delay=100, jitter=jitter, max_attempts=20,
                                  rng=random.Random(seed))
    exact = min(100, 2 * 2 ** (attempt - 1))
    delay = strategy.decide(attempt).delay
    assert exact * (1 - jitter) - 1e-9 <= delay <= min(100, exact * (1 + jitter)) + 1e-9


@given(base=st.floats(min_value=0, max_value=1e6), factor=st.floats(min_value=1, max_value=100),
       max_delay=st.floats(min_value=0, max_value=1e7))
def test_exponential_without_jitter_never_shrinks_and_respects_the_cap(base: float, factor: float,
                                                                        max_delay: float) -> None:
    strategy = ExponentialBackoff(base=base, factor=factor, max_delay=max_delay, jitter=0, max_attempts=50)
    delays = [strategy.decide(n).delay for n in range(1, 50)]
    assert delays == sorted(delays)
    assert all(0 <= d <= max_delay for d in delays)


def test_jitter_varies_and_is_reproducible_with_a_seed() -> None:
    def draws(seed: int) -> list[float]:
        strategy = ExponentialBackoff(base=10, jitter=0.5, rng=random.Random(seed), max_attempts=10)
        return [strategy.decide(1).delay for _ in range(20)]

    assert draws(1) == draws(1)
    assert len(set(draws(1))) > 1


def test_zero_jitter_does_not_touch_the_rng() -> None:
    rng = random.Random(3)
    ExponentialBackoff(jitter=0, rng=rng).decide(1)
    assert rng.random() == random.Random(3).random()


@pytest.mark.parametrize("kwargs", [
    {"jitter": 1.0}, {"jitter": 1.5}, {"jitter": -0.1}, {"jitter": math.nan},
    {"max_attempts": 0}, {"max_attempts": 2.5}, {"max_attempts": True},
    {"base": -1}, {"base": math.nan}, {"factor": -2}, {"max_delay": -1}, {"max_delay": math.inf},
])
def test_bad_exponential_parameters(kwargs: dict[str, float]) -> None:
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=key):
        ExponentialBackoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"step": -1}, {"step": math.inf}, {"max_attempts": 0}])
def test_bad_linear_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LinearBackoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", [ExponentialBackoff(), LinearBackoff(), NoRetry(), FixedDelay()])
def test_attempt_numbers_start_at_one(strategy: RetryStrategy) -> None:
    assert isinstance(strategy, RetryStrategy)
    with pytest.raises(ValueError, match="attempt"):
        strategy.decide(0)


# ---- linear and none -----------------------------------------------------------------------
def test_linear_steps() -> None:
    strategy = LinearBackoff(step=30, max_attempts=4)
    assert [strategy.decide(n).delay for n in (1, 2, 3)] == [30, 60, 90]
    assert strategy.decide(1).strategy == "linear"
    assert not strategy.decide(4).retry


def test_no_retry_always_gives_up() -> None:
    decision = NoRetry().decide(1)
    assert decision == RetryDecision(False, 0.0, "none", decision.reason) and decision.reason


# ---- policy: MRO ---------------------------------------------------------------------------
def test_most_specific_class_wins() -> None:
    exponential, linear = ExponentialBackoff(jitter=0), LinearBackoff()
    policy = RetryPolicy({TemporaryError: exponential, Throttled: linear, ResourceError: linear})
    assert policy.strategy_for(Throttled("429")) is linear
    assert policy.strategy_for(SlowUpstream("slow")) is exponential  # inherits TemporaryError's
    assert policy.strategy_for(SlowUpstream) is exponential  # a class works too
    assert policy.strategy_for(ResourceError()) is linear
    assert policy.strategy_for(Contended()) is linear  # first in the MRO
    assert isinstance(policy.strategy_for(ValueError()), NoRetry)
    assert policy.decide(SlowUpstream(), 1) == RetryDecision.after(2, "exponential")
    assert not policy.decide(KeyError(), 1).retry


def test_a_broad_mapping_does_not_shadow_a_narrow_one() -> None:
    policy = RetryPolicy({Exception: "linear", TemporaryError: "exponential"})
    assert policy.strategy_for(Throttled()).name == "exponential"
    assert policy.strategy_for(ValueError()).name == "linear"
    assert policy.strategy_for(KeyboardInterrupt()).name == "none"  # not an Exception


def test_strategy_names_objects_and_default() -> None:
    policy = RetryPolicy({KeyError: "linear", ValueError: Fixed()}, default="exponential",
                         strategies={"linear": LinearBackoff(step=1), "exponential": ExponentialBackoff(jitter=0)})
    assert policy.decide(KeyError(), 3).delay == 3
    assert policy.decide(ValueError(), 1) == RetryDecision.after(7.0, "seven")
    assert policy.strategy_for(OSError()).name == "exponential"
    assert RetryPolicy({KeyError: "linear"}, strategies={"linear": LinearBackoff()}).strategy_for(OSError()).name \
        == "none"  # "none" is always available


def test_bad_mapping_values_and_keys() -> None:
    with pytest.raises(ConfigError,
                       match="unknown strategy 'bogus'; expected one of abandoned, exponential, fixed, linear, none"):
        RetryPolicy({KeyError: "bogus"})
    with pytest.raises(TypeError, match="not a strategy"):
        RetryPolicy({KeyError: 42})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="is not an exception class"):
        RetryPolicy({Settings: "linear"})  # type: ignore[dict-item]
    for bad in ("", "my app.Error", "pkg.mod:", ":Error", "a:b:C"):
        with pytest.raises(ConfigError, match="is not a dotted class name"):
            RetryPolicy({bad: "linear"})


def test_lookups_are_cached_without_keeping_classes_alive() -> None:
    policy = RetryPolicy({TemporaryError: "exponential"})
    dynamic = type("Dynamic", (TemporaryError,), {})
    assert policy.strategy_for(dynamic) is policy.strategy_for(dynamic())
    ref = weakref.ref(dynamic)
    del dynamic
    gc.collect()
    assert ref() is None


# ---- policy: dotted names ------------------------------------------------------------------
def test_dotted_names_are_imported() -> None:
    policy = RetryPolicy({"builtins.KeyError": "linear", "jobengine.errors:TemporaryError": "exponential",
                          f"{__name__}.Outer.Nested": "none", f"{__name__}:Throttled": "linear"})
    assert policy.strategy_for(KeyError()).name == "linear"
    assert policy.strategy_for(SlowUpstream()).name == "exponential"
    assert policy.strategy_for(Throttled()).name == "linear"
    assert policy.strategy_for(Outer.Nested()) is policy.default
    assert policy.strategy_for(LookupError()).name == "none"  # the parent of KeyError is not mapped


def test_bad_dotted_name_is_a_config_error_on_first_use() -> None:
    policy = RetryPolicy({"no.such.module.Error": "linear"})  # lazy: building does not import
    with pytest.raises(ConfigError, match=r"'no.such.module.Error' does not import") as info:
        policy.strategy_for(ValueError())
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="'jobengine.errors.Nope' does not import"):
        RetryPolicy({"jobengine.errors.Nope": "linear"}).validate()
    with pytest.raises(ConfigError, match="'jobengine.config.Settings' is not an exception class"):
        RetryPolicy({"jobengine.config.Settings": "linear"}).strategy_for(ValueError())
    RetryPolicy({"builtins.KeyError": "linear"}).validate()  # fine


def test_import_errors_inside_a_module_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "retry_needs_dep.py").write_text("import retry_no_such_dependency\nclass E(Exception): ...\n")
    (tmp_path / "retry_raises.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="No module named 'retry_no_such_dependency'"):
        RetryPolicy({"retry_needs_dep.E": "linear"}).validate()
    with pytest.raises(ConfigError, match=r"\(RuntimeError: boom\);") as info:
        RetryPolicy({"retry_raises.E": "linear"}).validate()
    assert "second line" not in str(info.value)


# ---- fixed ---------------------------------------------------------------------------------
def test_fixed_constant_delay() -> None:
    strategy = FixedDelay(delay=10, max_attempts=3)
    assert [strategy.decide(n) for n in (1, 2)] == [RetryDecision.after(10, "fixed")] * 2
    assert not strategy.decide(3).retry and "3 of 3" in strategy.decide(3).reason
    assert FixedDelay().decide(4).delay == 10 and not FixedDelay().decide(5).retry  # 10 s, 5 runs by default


def test_fixed_list_of_delays_repeats_the_last() -> None:
    strategy = FixedDelay(delay=[10, 30, 60], max_attempts=6)  # like RQ's Retry(interval=[10, 30, 60])
    assert [strategy.decide(n).delay for n in range(1, 6)] == [10, 30, 60, 60, 60]
    assert not strategy.decide(6).retry
    assert strategy.delay == (10, 30, 60) and strategy == FixedDelay(delay=(10.0, 30.0, 60.0), max_attempts=6)


@pytest.mark.parametrize("kwargs,message", [
    ({"delay": -1}, "delay must be a finite number >= 0, got -1"),
    ({"delay": []}, "non-empty list"),
    ({"delay": [10, "x"]}, r"delay\[1\] must be a finite number"),
    ({"delay": "10"}, "delay must be a finite number"),
    ({"max_attempts": 0}, "max_attempts must be an integer >= 1"),
])
def test_bad_fixed_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FixedDelay(**kwargs)  # type: ignore[arg-type]


# ---- the registry --------------------------------------------------------------------------
def test_registry_builds_every_strategy_from_its_table() -> None:
    assert {"exponential", "linear", "none", "fixed"} <= set(STRATEGIES)
    built = build_strategies({"fixed": {"delay": [1, 2]}, "exponential": {"base": 3, "jitter": 0}})
    assert built["fixed"] == FixedDelay(delay=[1, 2])
    assert built["exponential"] == ExponentialBackoff(base=3, jitter=0)
    assert built["linear"] == LinearBackoff() and built["none"] == NoRetry()


def test_a_registered_class_is_buildable_by_name() -> None:
    @register
    @dataclasses.dataclass(frozen=True)
    class Constant:
        seconds: float
        name = "test-constant"

        def decide(self, attempt: int) -> RetryDecision:
            return RetryDecision.after(self.seconds, self.name)

    try:
        policy = RetryPolicy({KeyError: "test-constant"},
                             strategies=build_strategies({"test-constant": {"seconds": 4}}))
        assert policy.decide(KeyError(), 1) == RetryDecision.after(4, "test-constant")
        with pytest.raises(ConfigError, match=r"\[retry.test-constant\] missing key 'seconds'"):
            build_strategies()
    finally:
        del STRATEGIES["test-constant"]


def test_tables_name_a_class_by_dotted_path_or_registered_name() -> None:
    built = build_strategies({"shrinking": {"class": f"{__name__}.Halving", "start": 8},
                              f"{__name__}:Halving": {"start": 2, "max_attempts": 2},
                              "quick": {"class": "fixed", "delay": 1}})
    assert [built["shrinking"].decide(n).delay for n in (1, 2)] == [8, 4]
    assert not built[f"{__name__}:Halving"].decide(2).retry
    assert built["quick"] == FixedDelay(delay=1)
    policy = RetryPolicy({KeyError: "shrinking", ValueError: f"{__name__}.Fixed"}, strategies=built)
    assert policy.decide(KeyError(), 2).delay == 4
    assert policy.decide(ValueError(), 1) == RetryDecision.after(7.0, "seven")  # a dotted path without a table


@pytest.mark.parametrize("tables,message", [
    ({"exponential": {"fatcor": 2}},
     "[retry.exponential] unknown key 'fatcor'; expected one of base, factor, max_delay, jitter, max_attempts"),
    ({"exponential": {"rng": 2}}, "[retry.exponential] unknown key 'rng'"),  # not configurable
    ({"exponential": {"jitter": 1.5}}, "[retry.exponential] jitter must be in [0, 1), got 1.5"),
    ({"linear": {"max_attempts": 0}}, "[retry.linear] max_attempts must be an integer >= 1, got 0"),
    ({"none": {"delay": 1}}, "[retry.none] unknown key 'delay'; it takes no parameters"),
    ({"fixed": {"delay": []}}, "[retry.fixed] delay must be a number or a non-empty list of numbers"),
    ({"fast": {"delay": 1}},
     "[retry.fast]: unknown strategy 'fast'; expected one of abandoned, exponential, fixed, linear,"),
    ({"x": {"class": "nope.module.Backoff"}}, "[retry.x]: strategy class 'nope.module.Backoff' does not import"),
    ({"x": {"class": "jobengine.errors.ConfigError"}}, "[retry.x]: ConfigError is not a strategy"),
    ({"x": {"class": f"{__name__}.Halving"}}, "[retry.x] missing key 'start'; expected one of start, max_attempts"),
    ({"x": {"class": f"{__name__}.Halving", "start": -1}}, "[retry.x] start must be > 0, got -1"),
    ({"x": {"class": 3}}, "[retry.x]: class must be a strategy name or a dotted class path, got 3"),
])
def test_bad_tables_are_one_line_naming_table_and_key(tables: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_strategies(tables)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_build_strategy_checks_the_table_is_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"\[retry.fixed\]: expected a table"):
        build_strategy("fixed", 10)  # type: ignore[arg-type]


# ---- policy: settings ----------------------------------------------------------------------
def test_from_settings_uses_the_custom_mapping_and_parameters() -> None:
    settings = Settings.load(env={}, retry_map={"builtins.KeyError": "linear",
                                                "jobengine.errors:TemporaryError": "exponential",
                                                "builtins.OSError": "fixed"},
                             retry_params={"linear": {"step": 5},
                                           "exponential": {"base": 3, "factor": 3, "jitter": 0, "max_attempts": 3},
                                           "fixed": {"delay": [10, 30, 60]}})
    policy = RetryPolicy.from_settings(settings)
    assert policy.decide(KeyError("k"), 2).delay == 10
    assert [policy.decide(SlowUpstream(), n).delay for n in (1, 2)] == [3, 9]
    assert not policy.decide(SlowUpstream(), 3).retry
    assert [policy.decide(OSError(), n).delay for n in (1, 2, 3, 4)] == [10, 30, 60, 60]
    assert policy.strategy_for(ResourceError()).name == "none"  # not in this mapping


def test_from_settings_defaults() -> None:
    policy = RetryPolicy.from_settings(Settings.load(env={}))
    assert policy.strategy_for(ResourceError()).name == "linear"
    assert policy.decide(ResourceError(), 2).delay == 60
    assert policy.strategy_for(Throttled()).name == "exponential"
    assert policy.strategy_for(RuntimeError()).name == "none"
    assert not policy.decide(TemporaryError(), 5).retry  # 5 runs at most


def test_from_settings_reports_bad_values_as_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"\[retry\.exponential\] jitter must be in \[0, 1\)"):
        RetryPolicy.from_settings(Settings.load(env={}, retry_params={"exponential": {"jitter": 1.5}}))
    with pytest.raises(ConfigError, match=r"\[retry\.linear\] max_attempts must be an integer >= 1"):
        RetryPolicy.from_settings(Settings.load(env={}, retry_params={"linear": {"max_attempts": 0}}))
    with pytest.raises(ConfigError, match="'myapp.Error': unknown strategy 'fast'"):
        RetryPolicy.from_settings(Settings.load(env={}, retry_map={"myapp.Error": "fast"}))


def test_unimportable_name_in_settings_fails_at_validate_not_at_build() -> None:
    policy = RetryPolicy.from_settings(Settings.load(env={}, retry_map={"myapp.Missing": "linear"}))
    with pytest.raises(ConfigError, match="myapp.Missing"):
        policy.validate()
    with pytest.raises(ConfigError, match="myapp.Missing"):
        policy.strategy_for(TemporaryError())


# ---- policy: stored class names (the console) ----------------------------------------------
def test_strategy_for_a_stored_class_name() -> None:
    policy = RetryPolicy.from_settings(Settings.load(env={}))
    assert policy.strategy_for_name("jobengine.errors.TemporaryError").name == "exponential"
    assert policy.strategy_for_name(f"{__name__}.Throttled").name == "exponential"  # imported: MRO
    assert policy.strategy_for_name(f"{__name__}.Contended").name == "linear"
    assert policy.strategy_for_name("ValueError").name == "none"
    assert policy.strategy_for_name("gone.module.Vanished").name == "none"
    assert policy.strategy_for_name("tests.engine.jobs.fn.<locals>.Err").name == "none"
    assert policy.strategy_for_name("AbandonedJobError").name == "none"


def test_stored_names_match_unimportable_keys_by_exact_name() -> None:
    policy = RetryPolicy({"myapp.errors.Flaky": "linear", "myapp.errors:Busy": "exponential",
                          "builtins.KeyError": "linear", TemporaryError: "exponential"})
    assert policy.strategy_for_name("myapp.errors.Flaky").name == "linear"
    assert policy.strategy_for_name("myapp.errors.Busy").name == "exponential"
    assert policy.strategy_for_name("myapp.errors.FlakySubclass").name == "none"  # no MRO without import
    # the mapping's unimportable names do not stop importable ones from matching through the MRO
    assert policy.strategy_for_name("KeyError").name == "linear"
    assert policy.strategy_for_name(f"{__name__}.SlowUpstream").name == "exponential"
