"""Settings: defaults < TOML file < environment (JOBENGINE_*) < CLI flags.

The file is found at `--config PATH`, else `$JOBENGINE_CONFIG`, else `./jobtui.toml`.
Every problem is a one-line `ConfigError` naming the file, the key and what is expected.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jobengine.errors import ConfigError
from jobengine.retry.policy import build_strategies, looks_dotted
from jobengine.retry.strategies import STRATEGIES
from jobengine.types import Priority


@dataclass(frozen=True)
class Lane:
    """A priority lane: the RQ queue it dispatches to and the delay before it runs."""

    priority: Priority
    queue: str
    delay: float


DEFAULT_LANES: dict[str, tuple[str, float]] = {
    "critical": ("critical", 0.0),
    "high": ("high", 5.0),
    "normal": ("default", 30.0),
    "low": ("low", 300.0),
}

DEFAULT_RETRY_MAP: dict[str, str] = {
    "jobengine.errors.TemporaryError": "exponential",
    "jobengine.errors.ResourceError": "linear",
}


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Build with `Settings.load(...)`; never mutate."""

    redis_url: str | None = None
    database_url: str | None = None
    data_dir: str | None = None
    lanes: dict[str, tuple[str, float]] = field(default_factory=lambda: dict(DEFAULT_LANES))
    # thresholds
    long_running: float = 60.0
    failed_per_hour: int = 50
    stuck_after: float = 7200.0
    queue_size: dict[str, int] = field(default_factory=dict)
    # cache TTLs (seconds)
    cache_job_status: int = 300
    cache_stats: int = 1800
    cache_config: int = 3600
    # jobs per minute per queue; no entry means unlimited
    limits: dict[str, int] = field(default_factory=dict)
    # retry: dotted exception class -> strategy name, and the [retry.<name>] tables as given
    retry_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RETRY_MAP))
    retry_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # worker and console
    worker_queues: tuple[str, ...] = ()
    job_timeout: int = 180
    result_ttl: int = 500
    failure_ttl: int = 7 * 24 * 3600
    history_batch: int = 500
    # a worker silent this long is declared dead; its jobs go back to their queues (runtime/recovery)
    recovery_after: float = 45.0
    refresh: float = 1.0
    read_only: bool = False

    # ---- derived -------------------------------------------------------------------------
    def lane(self, priority: str | Priority) -> Lane:
        """The lane for a priority name; raises UnknownPriorityError for anything else."""
        from jobengine.errors import UnknownPriorityError

        name = priority.value if isinstance(priority, Priority) else str(priority)
        if name not in self.lanes:
            raise UnknownPriorityError(
                f"unknown priority {name!r}: use one of {', '.join(self.lanes)}"
            )
        queue, delay = self.lanes[name]
        return Lane(Priority(name), queue, delay)

    @property
    def queues(self) -> tuple[str, ...]:
        """RQ queue names in the order workers take them (critical first)."""
        if self.worker_queues:
            return self.worker_queues
        return tuple(self.lanes[p.value][0] for p in Priority if p.value in self.lanes)

    def priority_of_queue(self, queue: str) -> Priority | None:
        for name, (q, _) in self.lanes.items():
            if q == queue:
                return Priority(name)
        return None

    @property
    def embedded(self) -> bool:
        """True when neither server URL is configured: the embedded servers stand in."""
        return not self.redis_url and not self.database_url

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then the TOML file, then JOBENGINE_* variables, then `overrides`."""
        env = dict(os.environ if env is None else env)
        settings = cls()
        path = _find_config(config_path, env)
        if path is not None:
            settings = _apply_toml(settings, path)
        settings = _apply_env(settings, env)
        clean = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}")
        return replace(settings, **clean)


def _find_config(config_path: str | os.PathLike[str] | None, env: dict[str, str]) -> Path | None:
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (check --config / JOBENGINE_CONFIG)")
        return path
    if env.get("JOBENGINE_CONFIG"):
        path = Path(env["JOBENGINE_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"{path}: config file named by JOBENGINE_CONFIG not found")
        return path
    local = Path("jobtui.toml")
    return local if local.is_file() else None


# TOML layout: section -> key -> (Settings field, expected type)
_SCALARS: dict[str, dict[str, tuple[str, type]]] = {
    "": {"data_dir": ("data_dir", str), "read_only": ("read_only", bool)},
    "redis": {"url": ("redis_url", str)},
    "database": {"url": ("database_url", str)},
    "thresholds": {
        "long_running": ("long_running", float),
        "failed_per_hour": ("failed_per_hour", int),
        "stuck_after": ("stuck_after", float),
    },
    "cache": {
        "job_status": ("cache_job_status", int),
        "stats": ("cache_stats", int),
        "config": ("cache_config", int),
    },
    "worker": {
        "job_timeout": ("job_timeout", int),
        "result_ttl": ("result_ttl", int),
        "failure_ttl": ("failure_ttl", int),
        "history_batch": ("history_batch", int),
        "recovery_after": ("recovery_after", float),
    },
    "console": {"refresh": ("refresh", float)},
}
_TABLES = {"lanes", "limits", "thresholds.queue_size", "worker.queues"}


def _typed(where: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where}: expected a number >= 0, got {value!r}")
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where}: expected an integer >= 0, got {value!r}")
        return value
    if expected in (str, bool) and isinstance(value, expected):
        return value
    raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested tables to 'section.sub' -> table, keeping the known tables whole."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and name not in _TABLES:
            scalars = {k: v for k, v in value.items() if not isinstance(v, dict) or f"{name}.{k}" in _TABLES}
            out[name] = scalars
            out.update(_flatten({k: v for k, v in value.items() if k not in scalars}, name))
        else:
            out.setdefault(prefix, {})[key] = value
    return out


def _apply_toml(settings: Settings, path: Path) -> Settings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    changes: dict[str, Any] = _retry(path, data.pop("retry", {}), settings)
    for section, table in _flatten(data).items():
        if section in _TABLES or section == "lanes":
            continue
        known = _SCALARS.get(section)
        for key, value in table.items():
            where = f"{path}: {section + '.' if section else ''}{key}"
            full = f"{section}.{key}" if section else key
            if full in _TABLES:
                changes.update(_table(path, full, value, settings))
                continue
            if known is None or key not in known:
                raise ConfigError(f"{where}: unknown key (see the configuration table in README.md)")
            field_name, expected = known[key]
            changes[field_name] = _typed(where, value, expected)
    return replace(settings, **changes)


def _table(path: Path, name: str, value: Any, settings: Settings) -> dict[str, Any]:
    where = f"{path}: {name}"
    if name == "worker.queues":
        if not isinstance(value, list) or not all(isinstance(q, str) and q for q in value):
            raise ConfigError(f"{where}: expected a list of queue names")
        return {"worker_queues": tuple(value)}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table")
    if name == "lanes":
        lanes = dict(settings.lanes)
        for lane, spec in value.items():
            if lane not in DEFAULT_LANES:
                raise ConfigError(f"{where}.{lane}: unknown lane (expected one of {', '.join(DEFAULT_LANES)})")
            if not isinstance(spec, dict) or set(spec) - {"queue", "delay"}:
                raise ConfigError(f"{where}.{lane}: expected a table with 'queue' and/or 'delay'")
            queue = _typed(f"{where}.{lane}.queue", spec.get("queue", lanes[lane][0]), str)
            delay = _typed(f"{where}.{lane}.delay", spec.get("delay", lanes[lane][1]), float)
            lanes[lane] = (queue, delay)
        return {"lanes": lanes}
    ints = {str(q): _typed(f"{where}.{q}", n, int) for q, n in value.items()}  # limits, thresholds.queue_size
    return {"limits": ints} if name == "limits" else {"queue_size": ints}


def _retry(path: Path, value: Any, settings: Settings) -> dict[str, Any]:
    """`[retry.strategies]` (exception -> strategy) and every other `[retry.<name>]` table, kept as
    given and built once here so a bad key or value names the file and the table."""
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: retry: expected tables [retry.strategies] and [retry.<strategy>]")
    tables = dict(value)
    mapping_table = tables.pop("strategies", {})
    for name, params in tables.items():
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: retry.{name}: expected a table [retry.{name}] of strategy parameters")
    params = {**settings.retry_params, **tables}
    try:
        build_strategies(params)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    where = f"{path}: retry.strategies"
    if not isinstance(mapping_table, dict):
        raise ConfigError(f"{where}: expected a table")
    known = sorted({*STRATEGIES, *params})
    mapping = dict(settings.retry_map)
    for exc_name, strategy in mapping_table.items():
        if not (isinstance(strategy, str) and (strategy in known or looks_dotted(strategy))):
            raise ConfigError(f"{where}.{exc_name}: expected one of {', '.join(known)} or a dotted strategy "
                              f"class, got {strategy!r}")
        mapping[str(exc_name)] = strategy
    return {"retry_map": mapping, "retry_params": params}


def _apply_env(settings: Settings, env: dict[str, str]) -> Settings:
    """JOBENGINE_REDIS_URL, JOBENGINE_DATABASE_URL, JOBENGINE_DATA_DIR, JOBENGINE_REFRESH, ..."""
    text = {
        "JOBENGINE_REDIS_URL": "redis_url",
        "JOBENGINE_DATABASE_URL": "database_url",
        "JOBENGINE_DATA_DIR": "data_dir",
    }
    numbers: dict[str, tuple[str, type]] = {
        "JOBENGINE_REFRESH": ("refresh", float),
        "JOBENGINE_LONG_RUNNING": ("long_running", float),
        "JOBENGINE_STUCK_AFTER": ("stuck_after", float),
        "JOBENGINE_FAILED_PER_HOUR": ("failed_per_hour", int),
    }
    changes: dict[str, Any] = {name: env[var] for var, name in text.items() if env.get(var)}
    for var, (name, kind) in numbers.items():
        if env.get(var):
            try:
                changes[name] = kind(env[var])
            except ValueError:
                raise ConfigError(f"{var}: expected {kind.__name__}, got {env[var]!r}") from None
    if env.get("JOBENGINE_READ_ONLY"):
        changes["read_only"] = env["JOBENGINE_READ_ONLY"].lower() in ("1", "true", "yes")
    return replace(settings, **changes)
