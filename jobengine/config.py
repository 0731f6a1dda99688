"""Settings: defaults < TOML file < environment (JOBENGINE_*) < CLI flags.

The file is found at `--config PATH`, else `$JOBENGINE_CONFIG`, else `<data dir>/jobtui.toml` when
a data dir is named (`--data-dir` / `JOBENGINE_DATA_DIR`: `jobtui demo` writes its settings
there), else `./jobtui.toml`.
Every problem is a one-line `ConfigError` naming the file (or variable, or field), the key and
what is expected; the ranges are `_RULES` below (README "Validation"). A `Settings` checks itself
when built, so `Settings(refresh=0)` from Python fails the same way as `refresh = 0` in the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jobengine import validate as v
from jobengine.errors import ConfigError
from jobengine.retry.policy import build_strategies, looks_dotted
from jobengine.retry.strategies import STRATEGIES
from jobengine.types import Priority

CONFIG_NAME = "jobtui.toml"
OPERATOR_ACTIONS = ("dispatch", "retry", "cancel", "limit", "prune", "reconcile", "pause", "resume", "run_now",
                    "dead_letters")
#: what `[alerts] events` may name (jobengine.alerts); none given: every one
ALERT_EVENTS = ("health", "failures", "stuck", "long_wait", "dead_letters", "redis_reset")
_DAY = 86400
# Settings field -> (kind, low, high); floats > low when low is 0 and marked "pos"
_RULES: dict[str, tuple[str, float, float]] = {
    "redis_url": ("redis_url", 0, 0), "database_url": ("database_url", 0, 0), "data_dir": ("path", 0, 0),
    "long_running": ("pos", 0, 30 * _DAY), "failed_per_hour": ("int", 0, v.MAX_COUNT),
    "stuck_after": ("pos", 0, 366 * _DAY),
    "history_lag_warning": ("pos", 0, 30 * _DAY), "history_lag_failing": ("pos", 0, 30 * _DAY),
    "cache_job_status": ("int", 1, 30 * _DAY), "cache_stats": ("int", 1, 30 * _DAY),
    "cache_config": ("int", 1, 30 * _DAY),
    "job_timeout": ("int", 1, 30 * _DAY), "result_ttl": ("int", 0, 366 * _DAY),
    "failure_ttl": ("int", 1, 366 * _DAY), "history_batch": ("int", 1, 100_000),
    "reconcile_every": ("float", 0, 30 * _DAY), "recovery_after": ("float", 3, _DAY),
    "refresh": ("float", 0.1, 3600), "read_only": ("bool", 0, 0), "bulk_cap": ("int", 1, 1_000_000),
    "long_wait": ("pos", 0, 366 * _DAY),
    "alerts_enabled": ("bool", 0, 0), "alert_interval": ("float", 1, 366 * _DAY),
    "alert_check_every": ("float", 1, _DAY), "alert_burst_count": ("int", 1, v.MAX_COUNT),
    "alert_burst_minutes": ("float", 0.1, 7 * 24 * 60),
}
# the TOML key a field is read from (for error lines about the Settings object)
_KEYS = {"redis_url": "redis.url", "database_url": "database.url", "long_running": "thresholds.long_running",
         "failed_per_hour": "thresholds.failed_per_hour", "stuck_after": "thresholds.stuck_after",
         "history_lag_warning": "thresholds.history_lag_warning",
         "history_lag_failing": "thresholds.history_lag_failing",
         "cache_job_status": "cache.job_status", "cache_stats": "cache.stats", "cache_config": "cache.config",
         "job_timeout": "worker.job_timeout", "result_ttl": "worker.result_ttl",
         "failure_ttl": "worker.failure_ttl", "history_batch": "worker.history_batch", "refresh": "console.refresh",
         "reconcile_every": "worker.reconcile_every", "recovery_after": "worker.recovery_after",
         "bulk_cap": "console.bulk_cap",
         "worker_queues": "worker.queues", "queues_extra": "queues.extra", "dispatch_allow": "dispatch.allow",
         "permissions": "permissions.allow", "long_wait": "thresholds.long_wait",
         "queue_wait": "thresholds.queue_wait", "alerts_enabled": "alerts.enabled", "alert_urls": "alerts.urls",
         "alert_interval": "alerts.interval", "alert_check_every": "alerts.check_every",
         "alert_burst_count": "alerts.burst.count", "alert_burst_minutes": "alerts.burst.minutes",
         "alert_events": "alerts.events"}


def check_value(name: str, value: Any, where: str, *, parse: bool = False) -> Any:
    """One Settings field's value against its rule; text is parsed when `parse` (the environment)."""
    kind, lo, hi = _RULES[name]
    if kind == "int":
        return v.integer(value, where, int(lo), int(hi), parse=parse, error=ConfigError)
    if kind in ("float", "pos"):
        return v.number(value, where, lo, hi, lo_open=kind == "pos", parse=parse, error=ConfigError)
    if kind == "bool":
        if not parse and not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {v.show(value)}")
        return v.boolean(value, where, error=ConfigError)
    if value is None:
        return None
    if kind == "path":
        return v.text(value, where, max_len=v.MAX_PATH, error=ConfigError)
    url = v.text(value, where, max_len=v.MAX_URL, error=ConfigError).strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if kind == "redis_url":
        v.redis_url(url, where, error=ConfigError)
    if kind == "database_url" and scheme not in ("postgresql", "postgres") and not (not scheme and "=" in url):
        raise ConfigError(f"{where}: expected a postgresql:// URL (or a 'key=value' DSN), got {v.show(url)}")
    if any(c.isspace() for c in url) and scheme:
        raise ConfigError(f"{where}: a URL has no spaces, got {v.show(url)}")
    return url


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
    history_lag_warning: float = 60.0  # the oldest event waiting for PostgreSQL: warning, then failing
    history_lag_failing: float = 300.0
    queue_size: dict[str, int] = field(default_factory=dict)
    long_wait: float = 300.0  # a queue's oldest job waiting longer raises an alert ([thresholds.queue_wait] per queue)
    queue_wait: dict[str, int] = field(default_factory=dict)
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
    reconcile_every: float = 30.0  # workers check for a Redis reset this often and reconcile it; 0: never
    # a worker silent this long is declared dead; its jobs go back to their queues (runtime/recovery)
    recovery_after: float = 45.0
    refresh: float = 1.0
    bulk_cap: int = 10_000  # the most jobs one bulk action by filter touches
    read_only: bool = False
    # queues beyond the lanes that workers, limits and thresholds may name ([queues] extra)
    queues_extra: tuple[str, ...] = ()
    # fnmatch patterns of the functions that may be dispatched and run ([dispatch] allow); None: all
    dispatch_allow: tuple[str, ...] | None = None
    # operator actions allowed ([permissions] allow); None: all (read_only refuses every one)
    permissions: tuple[str, ...] | None = None
    # notifications through apprise ([alerts]); the URLs hold secrets: never in a repr
    alerts_enabled: bool = True
    alert_urls: tuple[str, ...] = field(default=(), repr=False)
    alert_interval: float = 900.0  # each alert key at most once per interval
    alert_check_every: float = 30.0  # workers evaluate this often (one process at a time)
    alert_burst_count: int = 10  # this many failures of one failure group ...
    alert_burst_minutes: float = 5.0  # ... within this many minutes is a burst
    alert_events: tuple[str, ...] | None = None  # None: every one of ALERT_EVENTS

    def __post_init__(self) -> None:
        """Check every field (one line naming the field's TOML key and what is expected)."""
        for name in _RULES:
            check_value(name, getattr(self, name), _KEYS.get(name, name))
        if not isinstance(self.lanes, dict) or not self.lanes:
            raise ConfigError(f"lanes: expected a table of lanes ({', '.join(DEFAULT_LANES)}), "
                              f"got {v.show(self.lanes)}")
        for lane, spec in self.lanes.items():
            if lane not in DEFAULT_LANES:
                raise ConfigError(f"lanes.{v.show(lane)}: unknown lane (expected one of {', '.join(DEFAULT_LANES)})")
            if not isinstance(spec, tuple | list) or len(spec) != 2:
                raise ConfigError(f"lanes.{lane}: expected (queue, delay), got {v.show(spec)}")
            v.queue_name(spec[0], f"lanes.{lane}.queue", error=ConfigError)
            v.number(spec[1], f"lanes.{lane}.delay", 0, v.MAX_DELAY, error=ConfigError)
        for name in ("queues_extra", "worker_queues"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list):
                raise ConfigError(f"{_KEYS[name]}: expected a list of queue names, got {v.show(value)}")
            for q in value:
                v.queue_name(q, _KEYS[name], None if name == "queues_extra" else self.known_queues,
                             error=ConfigError)
        for table, values in (("limits", self.limits), ("thresholds.queue_size", self.queue_size),
                              ("thresholds.queue_wait", self.queue_wait)):
            if not isinstance(values, dict):
                raise ConfigError(f"{table}: expected a table of queue = number, got {v.show(values)}")
            for q, n in values.items():
                v.queue_name(q, f"{table}.{v.show(q)}", self.known_queues, error=ConfigError)
                v.integer(n, f"{table}.{q}", 0, v.MAX_COUNT, error=ConfigError)
        if self.dispatch_allow is not None:
            if not isinstance(self.dispatch_allow, tuple | list):
                raise ConfigError(f"dispatch.allow: expected a list of patterns, got {v.show(self.dispatch_allow)}")
            for pattern in self.dispatch_allow:
                v.text(pattern, "dispatch.allow", max_len=v.MAX_TEXT, error=ConfigError)
        if self.permissions is not None:
            if not isinstance(self.permissions, tuple | list):
                raise ConfigError(f"permissions.allow: expected a list of actions, got {v.show(self.permissions)}")
            for action in self.permissions:
                if action not in OPERATOR_ACTIONS:
                    raise ConfigError(f"permissions.allow: unknown action {v.show(action)} "
                                      f"(expected some of {', '.join(OPERATOR_ACTIONS)})")
        _check_alert_lists(self.alert_urls, self.alert_events)

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
    def known_queues(self) -> tuple[str, ...]:
        """The lanes' queues, then `[queues] extra`: what workers, limits and thresholds may name."""
        return tuple(dict.fromkeys([q for q, _ in self.lanes.values()] + list(self.queues_extra)))

    def allows(self, action: str) -> bool:
        """Whether operators may `action` (see OPERATOR_ACTIONS): never when read-only."""
        return not self.read_only and (self.permissions is None or action in self.permissions)

    def wait_threshold(self, queue: str) -> float:
        """Seconds a queue's oldest job may wait before the long-wait alert ([thresholds.queue_wait])."""
        return float(self.queue_wait.get(queue, self.long_wait))

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
        path = _find_config(config_path, env, overrides.get("data_dir") or env.get("JOBENGINE_DATA_DIR"))
        if path is not None:
            settings = _apply_toml(settings, path)
        settings = _apply_env(settings, env)
        clean = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}")
        try:
            return replace(settings, **clean)
        except TypeError as exc:  # a value of the wrong shape somewhere the checks do not reach
            raise ConfigError(f"invalid setting: {exc}") from None


def _check_alert_lists(urls: Any, events: Any) -> None:
    """`alerts.urls`: apprise URLs (the text is never shown: it may hold a secret); `alerts.events`."""
    if not isinstance(urls, tuple | list):
        raise ConfigError(f"alerts.urls: expected a list of apprise URLs, got {type(urls).__name__}")
    for i, url in enumerate(urls):
        templated = isinstance(url, str) and "${" in url  # checked once expanded (jobengine.alerts.notify)
        if not isinstance(url, str) or len(url) > v.MAX_URL or "\x00" in url \
                or not (templated or ("://" in url and url.partition("://")[0].strip())):
            raise ConfigError(f"alerts.urls: entry {i + 1} is not an apprise URL like 'json://host/path' or "
                              "'slack://...' (its text is not shown: it may hold a secret)")
    if events is not None:
        if not isinstance(events, tuple | list):
            raise ConfigError(f"alerts.events: expected a list of events, got {v.show(events)}")
        for event in events:
            if event not in ALERT_EVENTS:
                raise ConfigError(f"alerts.events: unknown event {v.show(event)} "
                                  f"(expected some of {', '.join(ALERT_EVENTS)})")


def _find_config(config_path: str | os.PathLike[str] | None, env: dict[str, str],
                 data_dir: str | os.PathLike[str] | None = None) -> Path | None:
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
    if data_dir:
        beside = Path(data_dir).expanduser() / CONFIG_NAME
        if beside.is_file():
            return beside
    local = Path(CONFIG_NAME)
    return local if local.is_file() else None


# TOML layout: section -> key -> (Settings field, expected TOML type)
_SCALARS: dict[str, dict[str, tuple[str, type]]] = {
    "": {"data_dir": ("data_dir", str), "read_only": ("read_only", bool)},
    "redis": {"url": ("redis_url", str)},
    "database": {"url": ("database_url", str)},
    "thresholds": {
        "long_running": ("long_running", float),
        "failed_per_hour": ("failed_per_hour", int),
        "stuck_after": ("stuck_after", float),
        "history_lag_warning": ("history_lag_warning", float),
        "history_lag_failing": ("history_lag_failing", float),
        "long_wait": ("long_wait", float),
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
        "reconcile_every": ("reconcile_every", float),
        "recovery_after": ("recovery_after", float),
    },
    "console": {"refresh": ("refresh", float), "bulk_cap": ("bulk_cap", int)},
    "alerts": {
        "enabled": ("alerts_enabled", bool),
        "interval": ("alert_interval", float),
        "check_every": ("alert_check_every", float),
    },
    "alerts.burst": {"count": ("alert_burst_count", int), "minutes": ("alert_burst_minutes", float)},
}
_TABLES = {"lanes", "limits", "thresholds.queue_size", "thresholds.queue_wait", "worker.queues", "queues.extra",
           "dispatch.allow", "permissions.allow", "alerts.urls", "alerts.events"}


def _typed(where: str, value: Any, expected: type, field_name: str | None = None) -> Any:
    """The TOML value's type, then (for a Settings field) its range."""
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        return check_value(field_name, value, where) if field_name else float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return check_value(field_name, value, where) if field_name else value
    if expected in (str, bool) and isinstance(value, expected):
        return check_value(field_name, value, where) if field_name else value
    raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {v.show(value)}")


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
            changes[field_name] = _typed(where, value, expected, field_name)
    try:
        return replace(settings, **changes)
    except ConfigError as exc:  # a check across keys (a worker queue no lane has, ...)
        raise ConfigError(f"{path}: {exc}") from None


def _table(path: Path, name: str, value: Any, settings: Settings) -> dict[str, Any]:
    where = f"{path}: {name}"
    lists = {"worker.queues": ("worker_queues", "queue names"), "queues.extra": ("queues_extra", "queue names"),
             "dispatch.allow": ("dispatch_allow", "function patterns"), "permissions.allow": ("permissions", "actions"),
             "alerts.urls": ("alert_urls", "apprise URLs"), "alerts.events": ("alert_events", "events")}
    if name in lists:
        field_name, what = lists[name]
        if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
            raise ConfigError(f"{where}: expected a list of {what}, got {v.show(value)}")
        if field_name == "worker_queues" and not value:
            raise ConfigError(f"{where}: expected at least one queue (leave the key out for every lane)")
        if field_name in ("alert_urls", "alert_events"):
            try:
                _check_alert_lists(value, None) if field_name == "alert_urls" else _check_alert_lists((), value)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            return {field_name: tuple(value)}
        for q in value:
            if field_name in ("worker_queues", "queues_extra"):
                v.queue_name(q, where, error=ConfigError)
            else:
                v.text(q, where, max_len=v.MAX_TEXT, error=ConfigError)
        return {field_name: tuple(value)}
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
            v.queue_name(queue, f"{where}.{lane}.queue", error=ConfigError)
            delay = _typed(f"{where}.{lane}.delay", spec.get("delay", lanes[lane][1]), float)
            v.number(delay, f"{where}.{lane}.delay", 0, v.MAX_DELAY, error=ConfigError)
            lanes[lane] = (queue, delay)
        return {"lanes": lanes}
    ints: dict[str, int] = {}  # limits, thresholds.queue_size, thresholds.queue_wait
    for q, n in value.items():
        v.queue_name(q, f"{where}.{q}", error=ConfigError)
        ints[q] = v.integer(_typed(f"{where}.{q}", n, int), f"{where}.{q}", 0, v.MAX_COUNT, error=ConfigError)
    return {{"limits": "limits", "thresholds.queue_size": "queue_size"}.get(name, "queue_wait"): ints}


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
    parsed = {
        "JOBENGINE_REFRESH": "refresh",
        "JOBENGINE_LONG_RUNNING": "long_running",
        "JOBENGINE_STUCK_AFTER": "stuck_after",
        "JOBENGINE_FAILED_PER_HOUR": "failed_per_hour",
        "JOBENGINE_READ_ONLY": "read_only",
        "JOBENGINE_ALERTS_ENABLED": "alerts_enabled",
    }
    changes: dict[str, Any] = {}
    if env.get("JOBENGINE_ALERT_URLS"):  # comma-separated; replaces alerts.urls (secrets stay out of files)
        urls = tuple(u.strip() for u in env["JOBENGINE_ALERT_URLS"].split(",") if u.strip())
        try:
            _check_alert_lists(urls, None)
        except ConfigError as exc:
            raise ConfigError(f"JOBENGINE_ALERT_URLS: {str(exc).removeprefix('alerts.urls: ')}") from None
        changes["alert_urls"] = urls
    for var, name in {**text, **parsed}.items():
        if env.get(var):
            kind = _RULES[name][0]
            if kind in ("float", "pos") and not _looks_numeric(env[var]):
                raise ConfigError(f"{var}: expected float, got {v.show(env[var])}")
            changes[name] = check_value(name, env[var], var, parse=True)
    try:
        return replace(settings, **changes)
    except ConfigError as exc:
        raise ConfigError(f"environment: {exc}") from None


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
