"""Input checks shared by the config, dispatch, the engine's operator methods and the CLI.

Each check returns the value (parsed where it was text) or raises ONE line naming the input and
what is expected: `ValidationError` by default, or the `error` class given (the config passes
`ConfigError`). The documented limits are the constants below (README "Validation").
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from jobengine.errors import JobEngineError, JobFunctionError, ValidationError

MAX_TYPE = 200  # job type
MAX_QUEUE = 100  # queue name
MAX_FUNC = 300  # job function name
MAX_JOB_ID = 128  # job id (RQ's characters: letters, digits, _ and -)
MAX_TEXT = 500  # searches, fingerprints, prefixes, patterns
MAX_URL = 2048
MAX_PATH = 4096
MAX_KWARG = 100  # keyword argument name
MAX_DEPTH = 64  # nesting of job arguments (lists, tuples, dicts, sets)
MAX_INT_DIGITS = 4300  # decimal digits of an integer argument (Python's int/str limit)
MAX_DELAY = 366 * 86400.0  # dispatch delays and lane delays: at most a year
MAX_AGE = 36500 * 86400.0  # prune ages, --prune-every: at most 100 years
MAX_COUNT = 1_000_000_000  # limits, thresholds
BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
RESERVED_KWARGS = frozenset({"func", "type", "priority"})  # Engine.dispatch's own parameters

_QUEUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]*")
_JOB_ID = re.compile(r"[A-Za-z0-9_\-]+")
_DURATION = re.compile(r"\s*(\d{1,15}(?:\.\d{1,9})?)\s*([smhdw])\s*", re.IGNORECASE | re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Err = type[JobEngineError]
_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))


def show(value: Any, size: int = 60) -> str:
    """A short, always printable rendering of a bad value for an error line."""
    try:
        text = repr(value)
    except Exception:  # a 5,000-digit int, a broken __repr__
        text = f"<{type(value).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= size else f"{text[:size]}... ({len(text):,} chars)"


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


def _kind(value: Any) -> str:
    return type(value).__name__


def text(value: Any, what: str, *, max_len: int, empty: bool = False, error: Err = ValidationError) -> str:
    """A str without NUL or lone surrogates, at most `max_len` characters (and not blank unless `empty`)."""
    if not isinstance(value, str):
        raise error(f"{what}: expected text, got {_kind(value)} {show(value)}")
    if "\x00" in value:
        raise error(f"{what}: must not contain NUL characters, got {show(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{what}: must be valid UTF-8 text (no lone surrogates), got {show(value)}") from None
    if len(value) > max_len:
        raise error(f"{what}: at most {max_len:,} characters, got {len(value):,}")
    if not empty and not value.strip():
        raise error(f"{what}: must not be empty")
    return value


def integer(value: Any, what: str, lo: int, hi: int, *, parse: bool = False, error: Err = ValidationError) -> int:
    """An int (not a bool) from lo to hi; text is parsed when `parse` (CLI, environment)."""
    if parse and isinstance(value, str):
        value = parse_int(value, what, lo, hi, error=error)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what}: expected an integer, got {_kind(value)} {show(value)}")
    if not lo <= value <= hi:
        raise error(f"{what}: expected an integer >= {lo} (at most {hi:,}), got {show(value)}")
    return value


def parse_int(text_value: str, what: str, lo: int, hi: int, *, error: Err = ValidationError) -> int:
    cleaned = text_value.strip()
    if not re.fullmatch(r"[+-]?\d{1,30}", cleaned, re.ASCII):
        raise error(f"{what}: expected a whole number from {lo} to {hi:,}, got {show(text_value)}")
    return integer(int(cleaned), what, lo, hi, error=error)


def number(value: Any, what: str, lo: float, hi: float, *, lo_open: bool = False, parse: bool = False,
           error: Err = ValidationError) -> float:
    """A finite int or float (not a bool) in [lo, hi] ((lo, hi] with `lo_open`); text is parsed
    when `parse` (CLI, environment)."""
    if parse and isinstance(value, str):
        try:
            value = float(value.strip()) if len(value) <= 40 else math.nan
        except ValueError:
            raise error(f"{what}: expected a number, got {show(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{what}: expected a number, got {_kind(value)} {show(value)}")
    low = f"> {_num(lo)}" if lo_open else f">= {_num(lo)}"
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float) or as_float < lo or (lo_open and as_float <= lo) or as_float > hi:
        raise error(f"{what}: expected a finite number {low} (at most {_num(hi)}), got {show(value)}")
    return as_float


def boolean(value: Any, what: str, *, error: Err = ValidationError) -> bool:
    """True/False, or one of true, false, 1, 0, yes, no (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOLEANS:
        return BOOLEANS[value.strip().lower()]
    raise error(f"{what}: expected one of {', '.join(BOOLEANS)}, got {show(value)}")


def parse_duration(value: Any, what: str, *, hi: float = MAX_AGE, error: Err = ValidationError) -> float:
    """Seconds in '90s', '15m', '12h', '7d' or '2w': positive, at most `hi`."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0.0
    prefix = f"{what}: " if what else ""
    if not match or seconds <= 0:
        raise error(f"{prefix}{show(value)} is not a duration: use a positive number and a unit, "
                    "like 90s, 15m, 12h or 7d")
    if seconds > hi:
        raise error(f"{prefix}{show(value)} is too long (at most {hi / 86400:,.0f}d)")
    return seconds


def queue_name(value: Any, what: str, known: Iterable[str] | None = None, *, error: Err = ValidationError) -> str:
    """A queue name (letters, digits, _ . : -; at most 100), one of `known` when given."""
    name = text(value, what, max_len=MAX_QUEUE, error=error)
    if not _QUEUE.fullmatch(name):
        raise error(f"{what}: a queue name is letters, digits, '_', '.', ':' and '-', got {show(name)}")
    if known is not None:
        names = list(dict.fromkeys(known))
        if name not in names:
            raise error(f"{what}: unknown queue {name!r}: use one of {', '.join(names)} "
                        "(or list it in [queues] extra)")
    return name


def function_name(value: Any, what: str = "job function") -> str:
    """'package.module:function' (or dotted 'package.module.function'): identifiers only."""
    name = text(value, what, max_len=MAX_FUNC, error=JobFunctionError).strip()
    module, colon, attr = name.partition(":")
    parts = module.split(".") + (attr.split(".") if colon else [])
    if not all(p.isidentifier() for p in parts) or len(parts) < 2 or ":" in attr:
        raise JobFunctionError(f"{what}: expected 'package.module:function' (identifiers separated by dots), "
                               f"got {show(value)}")
    return name


def job_id(value: Any, what: str = "job id") -> str:
    """An RQ job id: letters, digits, '_' and '-', at most 128."""
    ident = text(value, what, max_len=MAX_JOB_ID, error=ValidationError)
    if not _JOB_ID.fullmatch(ident):
        raise ValidationError(f"{what}: letters, digits, '_' and '-' only, got {show(ident)}")
    return ident


def optional_text(value: Any, what: str, max_len: int = MAX_TEXT) -> str | None:
    return None if value is None else text(value, what, max_len=max_len, empty=True)


def job_args(args: Any, kwargs: Any, what: str = "job arguments") -> None:
    """Arguments a job can carry: kwargs names are identifiers (not dispatch's own), nesting at most
    64 levels, integers at most 4,300 digits, strings valid UTF-8 (no lone surrogates)."""
    if not isinstance(args, tuple | list):
        raise ValidationError(f"{what}: args must be a tuple or list, got {_kind(args)}")
    if not isinstance(kwargs, Mapping):
        raise ValidationError(f"{what}: kwargs must be a dict, got {_kind(kwargs)}")
    for key in kwargs:
        if not isinstance(key, str) or not key.isidentifier() or len(key) > MAX_KWARG:
            raise ValidationError(f"{what}: keyword argument names must be identifiers (at most {MAX_KWARG} "
                                  f"characters), got {show(key)}")
    for i, value in enumerate(args):
        _value(value, f"argument {i + 1}", 1)
    for key, value in kwargs.items():
        _value(value, f"keyword argument {key!r}", 1)


def _value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValidationError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return
    if isinstance(value, int):
        if value.bit_length() > _INT_BITS:
            raise ValidationError(f"{where}: an integer of more than {MAX_INT_DIGITS:,} digits")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{where}: text must be valid UTF-8 (no lone surrogates)") from None
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _value(k, where, depth + 1)
            _value(v, where, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _value(item, where, depth + 1)


def reserved_kwargs(kwargs: Mapping[str, Any]) -> None:
    """`Engine.dispatch(func, *args, type=, priority=, **kwargs)`: kwargs named like dispatch's own
    parameters are refused (pass them in `JobSpec(kwargs={...})` to `dispatch_many`)."""
    clash = sorted(set(kwargs) & RESERVED_KWARGS)
    if clash:
        raise ValidationError(f"keyword argument {clash[0]!r} is reserved by Engine.dispatch; pass job keyword "
                              f"arguments named {', '.join(sorted(RESERVED_KWARGS))} as "
                              "dispatch_many([JobSpec(func, kwargs={...})])")


def _segments(name: str) -> list[str]:
    return name.replace(":", ".").split(".")


def function_allowed(name: str, patterns: Iterable[str] | None) -> bool:
    """Whether `name` ('pkg.mod:func' or dotted) matches one of `patterns` (None: allow all).

    Matching is fnmatch segment by segment (':' counts as '.'), so '*' never crosses a dot:
    'myapp.tasks.*' allows 'myapp.tasks:send' but not 'myapp.tasks.os.system'."""
    if patterns is None:
        return True
    parts = _segments(name)
    for pattern in patterns:
        want = _segments(pattern)
        if len(want) == len(parts) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want, strict=True)):
            return True
    return False


def check_allowed(name: str, patterns: Iterable[str] | None, what: str = "job function") -> None:
    if not function_allowed(name, patterns):
        raise JobFunctionError(f"{what} {show(name)} is not in [dispatch] allow ({', '.join(patterns or ())})")


# ---- Redis URLs ----------------------------------------------------------------------------
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
SENTINEL_FORM = "redis+sentinel://[:password@]host1:26379,host2:26379/mymaster[/db][?sentinel_password=...&ssl=true]"
_SERVICE = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


class SentinelURL(NamedTuple):
    """The parts of a redis+sentinel:// URL (the query is redis-py's, plus our own keys)."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int | None  # from the path; None when absent
    username: str | None  # for the Redis servers (the sentinels' come from the query)
    password: str | None
    query: str  # raw, still percent-encoded


def masked(url: str) -> str:
    """`url` with the password of its user part replaced by ***."""
    head, sep, rest = url.partition("://")
    user, at, hosts = rest.rpartition("@")
    if not sep or not at or ":" not in user:
        return url
    return f"{head}://{user.partition(':')[0]}:***@{hosts}"


def _host_port(item: str) -> tuple[str, int]:
    """One `host[:port]` of a sentinel list (IPv6 in brackets); ValueError on a bad one."""
    host, port = item, str(SENTINEL_PORT)
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(item)
            port = rest[1:]
    elif ":" in item:
        host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(item)
    return host, int(port)


def sentinel_url(url: str) -> SentinelURL:
    """Split a redis+sentinel:// URL; ValueError naming what is wrong."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    items = [h.strip() for h in hosts.split(",")]
    if not hosts or not all(items):
        raise ValueError("names no sentinel host")
    try:
        sentinels = [_host_port(h) for h in items]
    except ValueError as exc:
        raise ValueError(f"bad sentinel address {exc.args[0]!r} (host:port, port 1-65535)") from None
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise ValueError("names no service (the master name, e.g. /mymaster)")
    if not _SERVICE.fullmatch(path[0]):
        raise ValueError(f"bad service name {path[0]!r} (letters, digits, '_', '.', '-')")
    if len(path) > 2 or (len(path) == 2 and path[1] and not (path[1].isdigit() and len(path[1]) < 6)):
        raise ValueError("the path is /service or /service/db (db a number)")
    db = int(path[1]) if len(path) == 2 and path[1] else None
    user, colon, password = userinfo.partition(":")
    return SentinelURL(sentinels, path[0], db, unquote(user) or None,
                       unquote(password) if colon and password else None, parts.query)


def redis_url(value: str, what: str, *, error: Err = ValidationError) -> str:
    """A redis://, rediss://, unix:// or redis+sentinel:// URL (the sentinel form checked whole)."""
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    if scheme not in ("redis", "rediss", "unix", SENTINEL_SCHEME):
        raise error(f"{what}: expected a redis://, rediss://, unix:// or {SENTINEL_SCHEME}:// URL, "
                    f"got {show(masked(value))}")
    if scheme == SENTINEL_SCHEME:
        try:
            sentinel_url(value)
        except ValueError as exc:
            raise error(f"{what}: {exc}; expected {SENTINEL_FORM}, got {show(masked(value), 120)}") from None
    return value
