"""Settings precedence and one-line errors for malformed configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobengine.config import Settings
from jobengine.errors import ConfigError, UnknownPriorityError


def test_defaults_follow_the_specification() -> None:
    s = Settings.load(env={})
    assert [(p, s.lane(p).queue, s.lane(p).delay) for p in ("critical", "high", "normal", "low")] == [
        ("critical", "critical", 0), ("high", "high", 5), ("normal", "default", 30), ("low", "low", 300)]
    assert s.queues == ("critical", "high", "default", "low")
    assert (s.long_running, s.stuck_after) == (60, 7200)
    assert (s.cache_job_status, s.cache_stats, s.cache_config) == (300, 1800, 3600)
    assert s.limits == {} and s.embedded


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text('[redis]\nurl = "redis://file"\n[database]\nurl = "postgresql://file"\n'
                   '[thresholds]\nlong_running = 10\nstuck_after = 60\n[limits]\ndefault = 600\n'
                   '[lanes.high]\ndelay = 1\n[retry.strategies]\n"builtins.KeyError" = "linear"\n')
    env = {"JOBENGINE_REDIS_URL": "redis://env", "JOBENGINE_STUCK_AFTER": "90"}
    s = Settings.load(cfg, env=env, stuck_after=120.0, database_url=None)
    assert s.redis_url == "redis://env"  # env beats file
    assert s.database_url == "postgresql://file"  # an unset flag changes nothing
    assert s.long_running == 10 and s.stuck_after == 120  # flags beat env
    assert s.limits == {"default": 600}
    assert s.lane("high").delay == 1 and s.lane("normal").delay == 30
    assert s.retry_map["builtins.KeyError"] == "linear"
    assert s.retry_map["jobengine.errors.TemporaryError"] == "exponential"


def test_retry_tables_are_kept_as_given(tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text('[retry.fixed]\ndelay = [10, 30, 60]\nmax_attempts = 4\n[retry.exponential]\nbase = 3\n'
                   '[retry.gentle]\nclass = "linear"\nstep = 1\n'
                   '[retry.strategies]\n"myapp.errors.Flaky" = "fixed"\n"myapp.errors.Busy" = "gentle"\n')
    s = Settings.load(cfg, env={})
    assert s.retry_params == {"fixed": {"delay": [10, 30, 60], "max_attempts": 4}, "exponential": {"base": 3},
                              "gentle": {"class": "linear", "step": 1}}
    assert s.retry_map["myapp.errors.Flaky"] == "fixed" and s.retry_map["myapp.errors.Busy"] == "gentle"
    assert s.retry_map["jobengine.errors.TemporaryError"] == "exponential"  # the defaults stay


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text("[console]\nrefresh = 2.5\n")
    assert Settings.load(env={"JOBENGINE_CONFIG": str(cfg)}).refresh == 2.5
    with pytest.raises(ConfigError, match="JOBENGINE_CONFIG not found"):
        Settings.load(env={"JOBENGINE_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize("text,message", [
    ("[thresholds]\nstuck_afer = 1\n", "thresholds.stuck_afer: unknown key"),
    ("[thresholds]\nstuck_after = 'soon'\n", "thresholds.stuck_after: expected float, got str"),
    ("[limits]\ndefault = -5\n", "limits.default: expected an integer >= 0"),
    ("[lanes.urgent]\ndelay = 1\n", "lanes.urgent: unknown lane"),
    ("[retry.strategies]\nValueError = 'sometimes'\n", "expected one of abandoned, exponential, fixed, linear, none"),
    ("[retry.strategies]\nValueError = 3\n", "retry.strategies.ValueError: expected one of"),
    ("[retry.exponential]\nfatcor = 2\n",
     "[retry.exponential] unknown key 'fatcor'; expected one of base, factor, max_delay, jitter, max_attempts"),
    ("[retry.exponential]\nbase = 'x'\n", "[retry.exponential] base must be a finite number >= 0, got 'x'"),
    ("[retry.linear]\nstep = -1\n", "[retry.linear] step must be a finite number >= 0"),
    ("[retry.fixed]\ndelay = [10, -1]\n", "[retry.fixed] delay[1] must be a finite number >= 0, got -1"),
    ("[retry.slow]\nstep = 1\n", "[retry.slow]: unknown strategy 'slow'"),
    ("[retry]\nfixed = 10\n", "retry.fixed: expected a table [retry.fixed]"),
    ("[redis\nurl=1", "not valid TOML"),
    ("colour = 'blue'\n", "colour: unknown key"),
])
def test_malformed_config_is_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, env={})
    assert message in str(err.value)
    assert str(cfg) in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_environment_value() -> None:
    with pytest.raises(ConfigError, match="JOBENGINE_REFRESH: expected float"):
        Settings.load(env={"JOBENGINE_REFRESH": "fast"})


def test_unknown_priority_names_the_choices() -> None:
    with pytest.raises(UnknownPriorityError, match="use one of critical, high, normal, low"):
        Settings.load(env={}).lane("urgent")
