"""Bad input at every edge: CLI arguments and options, the environment, the config file, the Python
API. Each must give ONE line, exit 2 (CLI) or a `jobengine` error (API), and write nothing (jobs and
audit rows in PostgreSQL, keys in Redis, counted before and after every example).

`pytest -s tests/engine/test_validation.py` prints the table of the closing note (TALLY).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobengine import validate as v
from jobengine.config import Settings
from jobengine.dispatch import JobSpec
from jobengine.engine import Engine
from jobengine.errors import ConfigError, JobEngineError
from jobtui.cli import cli
from tests.engine import jobs
from tests.engine.helpers import rows

ROOT = Path(__file__).resolve().parents[2]
FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# kind -> [tried, tracebacks, wrong exits, partial writes, not one line]
TALLY: dict[str, list[int]] = {}


def tally(kind: str, *, traceback_: bool = False, wrong_exit: bool = False, partial: bool = False,
          lines: int = 1) -> None:
    row = TALLY.setdefault(kind, [0, 0, 0, 0, 0])
    row[0] += 1
    row[1] += traceback_
    row[2] += wrong_exit
    row[3] += partial
    row[4] += lines != 1


def state(redis_url: str, database_url: str) -> tuple[int, int, int]:
    """(Redis keys, jobs rows, audit rows): what a refused input must leave unchanged."""
    conn = redis.Redis.from_url(redis_url)
    try:
        keys = conn.dbsize()
    finally:
        conn.close()
    with psycopg.connect(database_url) as pg:
        jobs_n = pg.execute("SELECT count(*) FROM jobs").fetchone()
        audit_n = pg.execute("SELECT count(*) FROM audit_log").fetchone()
    assert jobs_n is not None and audit_n is not None
    return int(keys), int(jobs_n[0]), int(audit_n[0])


@pytest.fixture
def servers(redis_url: str, database_url: str) -> Iterator[list[str]]:
    with Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url)):
        pass  # migrations applied and the start-up keys written before anything is counted
    yield ["--redis-url", redis_url, "--database-url", database_url]


def run_cli(kind: str, args: list[str], redis_url: str, database_url: str, env: dict[str, str] | None = None) -> str:
    """Invoke `jobtui ARGS` in-process; tally and assert one line, exit 2, nothing written."""
    before = state(redis_url, database_url)
    result = CliRunner().invoke(cli, args, env={"JOBENGINE_CONFIG": "", **(env or {})})
    after = state(redis_url, database_url)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    tally(kind, traceback_=crashed or "Traceback" in result.output, wrong_exit=result.exit_code != 2,
          partial=before != after, lines=len(lines))
    detail = "".join(traceback.format_exception(result.exception)) if crashed and result.exception else result.output
    assert not crashed, detail
    assert result.exit_code == 2, (args, result.output)
    assert len(lines) == 1, (args, result.output)
    assert before == after, (args, before, after)
    return lines[0]


def call_api(kind: str, fn: Callable[[], Any], redis_url: str, database_url: str) -> str:
    """Call the engine; tally and assert a one-line jobengine error and nothing written."""
    before = state(redis_url, database_url)
    error: BaseException | None = None
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - which kind it is, is the test
        error = exc
    after = state(redis_url, database_url)
    ours = isinstance(error, JobEngineError)
    message = str(error) if error is not None else ""
    tally(kind, traceback_=error is not None and not ours, wrong_exit=error is None, partial=before != after,
          lines=len(message.splitlines()) if ours else 1)
    assert error is not None, "accepted"
    assert ours, "".join(traceback.format_exception(error))
    assert "\n" not in message and message
    assert before == after, (before, after)
    return message


# ---- strategies --------------------------------------------------------------------------------
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
NASTY_TEXT = st.one_of(
    st.text(max_size=30).map(lambda s: s + "\x00"),
    st.text(max_size=30).map(lambda s: s + "\ud800"),
    st.text(max_size=30).map(lambda s: "\udcff" + s),  # invalid UTF-8 from argv (surrogateescape)
    st.integers(201, 3000).map(lambda n: "t" * n),
)
HUGE_INT = st.integers(4301, 6000).map(lambda n: ("-" if n % 2 else "") + "7" * n)
DEEP_JSON = st.integers(65, 5000).map(lambda n: "[" * n + "]" * n)
NOT_JSON = SAFE_TEXT.filter(lambda s: _not_json(s) and not s.startswith("-"))
NAN = st.sampled_from(["NaN", "Infinity", "-Infinity", "[NaN]", '{"a": Infinity}'])
BAD_ARG = st.one_of(HUGE_INT, DEEP_JSON, NOT_JSON, NAN, st.just('"\\ud800"'), st.just('["a\\udfff"]'))
PATHLIKE = st.one_of(
    st.sampled_from(["../../etc:passwd", "/etc/passwd", "os/path:join", "a b:c", "pkg.:f", ":f", "pkg:", "a..b:c",
                     "1pkg.mod:f", "pkg.mod:f:g", "C:\\x.y", "pkg.mod:f()", "pkg-mod:f", "~/x:y", "", " "]),
    SAFE_TEXT.filter(lambda s: not _identifier_path(s)),
)
DURATION_BAD = st.one_of(
    st.integers(36501, 10**12).map(lambda n: f"{n}d"),
    st.sampled_from(["0s", "-5m", "nan", "infd", "1e9d", "5", "d", "", "1.5.2h", "99999999999d", "3y", "٣d"]),
    SAFE_TEXT.filter(lambda s: not _is_duration(s)),
)
QUEUES = {"critical", "high", "default", "low"}
QUEUE_BAD = st.one_of(NASTY_TEXT, SAFE_TEXT.filter(lambda s: s not in QUEUES), st.just(""))


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return True
    return False


def _identifier_path(text: str) -> bool:
    try:
        v.function_name(text)
    except JobEngineError:
        return False
    return True


def _is_duration(text: str) -> bool:
    try:
        v.parse_duration(text, "x")
    except JobEngineError:
        return False
    return True


# ---- CLI: arguments ----------------------------------------------------------------------------
@FAST
@given(arg=BAD_ARG, where=st.integers(0, 2))
def test_cli_dispatch_bad_json_arguments(servers: list[str], redis_url: str, database_url: str, arg: str,
                                         where: int) -> None:
    args = ["1", "2"]
    args.insert(where, arg)
    run_cli("CLI: dispatch arguments (JSON)", [*servers, "dispatch", "tests.engine.jobs:add", *args],
            redis_url, database_url)


@FAST
@given(func=PATHLIKE)
def test_cli_dispatch_path_like_functions(servers: list[str], redis_url: str, database_url: str, func: str) -> None:
    line = run_cli("CLI: function names", [*servers, "dispatch", func], redis_url, database_url)
    assert "job function" in line or "FUNCTION" in line


@FAST
@given(option=st.sampled_from(["--type", "--priority", "--kwargs"]), value=st.one_of(NASTY_TEXT, SAFE_TEXT))
def test_cli_dispatch_bad_options(servers: list[str], redis_url: str, database_url: str, option: str,
                                  value: str) -> None:
    if option == "--type" and value.strip() and len(value) <= v.MAX_TYPE and "\x00" not in value \
            and not any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        value = value + "\x00"  # a valid type would dispatch: make it bad
    if option == "--priority" and value in ("critical", "high", "normal", "low"):
        value += "!"
    if option == "--kwargs":
        value = value if _not_json(value) else json.dumps([value])  # not JSON, or JSON but not an object
    run_cli("CLI: dispatch options", [*servers, "dispatch", "tests.engine.jobs:add", "1", "2", option, value],
            redis_url, database_url)


@FAST
@given(key=st.one_of(st.sampled_from(["a b", "1x", "", "a-b", "\\ud800", "x" * 101]), NOT_JSON.map(lambda s: s + " ")))
def test_cli_dispatch_bad_kwargs_names(servers: list[str], redis_url: str, database_url: str, key: str) -> None:
    kwargs = '{"' + key + '": 1}' if key.startswith("\\") else json.dumps({key: 1})
    run_cli("CLI: dispatch arguments (JSON)", [*servers, "dispatch", "tests.engine.jobs:add", "--kwargs", kwargs],
            redis_url, database_url)


# ---- CLI: options --------------------------------------------------------------------------------
@FAST
@given(value=DURATION_BAD, command=st.sampled_from(["prune", "worker", "audit"]))
def test_cli_durations(servers: list[str], redis_url: str, database_url: str, value: str, command: str) -> None:
    option = {"prune": "--older-than", "worker": "--prune-every", "audit": "--since"}[command]
    extra = ["--burst"] if command == "worker" else []
    line = run_cli("CLI: durations", [*servers, command, option, value, *extra], redis_url, database_url)
    assert option in line


@FAST
@given(queue=QUEUE_BAD, amount=st.one_of(st.just("5"), SAFE_TEXT, st.integers(-10**30, 10**30).map(str)))
def test_cli_limit(servers: list[str], redis_url: str, database_url: str, queue: str, amount: str) -> None:
    if queue in QUEUES:
        queue += "?"
    run_cli("CLI: limit", [*servers, "limit", queue, amount], redis_url, database_url)


@FAST
@given(amount=st.one_of(st.integers(10**9 + 1, 10**40).map(str), st.integers(max_value=-1).map(str),
                        SAFE_TEXT.filter(lambda s: not s.strip().lstrip("+").isdigit())))
def test_cli_limit_amounts(servers: list[str], redis_url: str, database_url: str, amount: str) -> None:
    run_cli("CLI: limit", [*servers, "limit", "default", amount], redis_url, database_url)


@FAST
@given(case=st.one_of(
    st.tuples(st.just("console"), st.just("--refresh"),
              st.sampled_from(["0", "nan", "inf", "-1", "1e300", "0.01", "3601", "fast", ""])),
    st.tuples(st.just("worker"), st.just("--queues"), QUEUE_BAD.map(lambda q: f"default,{q}")),
    st.tuples(st.just("worker"), st.just("--processes"), st.sampled_from(["0", "-1", "999", "x", "1e3"])),
    st.tuples(st.just("prune"), st.just("--batch-size"), st.sampled_from(["0", "-1", "10000001", "x"])),
    st.tuples(st.just("demo"), st.just("--rate"), st.sampled_from(["0", "nan", "inf", "-3", "1e300"])),
    st.tuples(st.just("audit"), st.just("--limit"), st.sampled_from(["0", "-1", "100001", "x", "1.5"])),
    st.tuples(st.just("audit"), st.just("--job"), st.sampled_from(["a b", "x" * 129, "../x", "\udcff"])),
    st.tuples(st.just("metrics"), st.just("--port"), st.sampled_from(["0", "65536", "-1", "x"])),
))
def test_cli_options(servers: list[str], redis_url: str, database_url: str, case: tuple[str, str, str]) -> None:
    command, option, value = case
    if command == "worker" and option == "--queues" and value.split(",")[1] in QUEUES:
        value += "?"
    extra = ["--burst"] if command == "worker" else ["--once"] if command == "metrics" else \
        ["--headless", "--seconds", "1"] if command == "demo" else []
    run_cli("CLI: options", [*servers, command, option, value, *extra], redis_url, database_url)


@FAST
@given(case=st.one_of(
    st.tuples(st.sampled_from(["--redis-url"]), st.one_of(NASTY_TEXT, st.sampled_from(
        ["http://x", "x", "", "redis//x", "postgresql://x", "redis://a b"]))),
    st.tuples(st.sampled_from(["--database-url"]), st.one_of(NASTY_TEXT, st.sampled_from(
        ["http://x", "x", "pg://x", "redis://x", "mysql://x"]))),
))
def test_cli_global_options(redis_url: str, database_url: str, case: tuple[str, str]) -> None:
    option, value = case
    others = ["--database-url", database_url] if option == "--redis-url" else ["--redis-url", redis_url]
    run_cli("CLI: options", [*others, option, value, "limit"], redis_url, database_url)


# ---- environment ---------------------------------------------------------------------------------
ENV_NUMBERS = {"JOBENGINE_REFRESH": (0.1, 3600), "JOBENGINE_LONG_RUNNING": (0, 30 * 86400),
               "JOBENGINE_STUCK_AFTER": (0, 366 * 86400), "JOBENGINE_FAILED_PER_HOUR": (0, 10**9)}


def _env_ok(var: str, value: str) -> bool:
    try:
        Settings.load(env={var: value})
    except ConfigError:
        return False
    return True


@FAST
@given(var=st.sampled_from([*ENV_NUMBERS, "JOBENGINE_READ_ONLY", "JOBENGINE_REDIS_URL", "JOBENGINE_DATABASE_URL"]),
       value=st.one_of(SAFE_TEXT, st.sampled_from(["nan", "inf", "-inf", "-5", "0", "1e300", "maybe", "on", "off",
                                                   "http://x", "2**63", "9" * 5000]),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr)))
def test_environment(servers: list[str], redis_url: str, database_url: str, var: str, value: str) -> None:
    if not value.strip() or _env_ok(var, value):
        value = {"JOBENGINE_READ_ONLY": "maybe", "JOBENGINE_REDIS_URL": "http://x",
                 "JOBENGINE_DATABASE_URL": "http://x", "JOBENGINE_FAILED_PER_HOUR": "-5"}.get(var, "nan")
    args = servers if var not in ("JOBENGINE_REDIS_URL", "JOBENGINE_DATABASE_URL") else \
        [servers[2], servers[3]] if var == "JOBENGINE_REDIS_URL" else [servers[0], servers[1]]
    line = run_cli("environment", [*args, "limit"], redis_url, database_url, env={var: value})
    assert var in line


# ---- config file ---------------------------------------------------------------------------------
CONFIG_KEYS: dict[str, tuple[str, float, float]] = {
    "thresholds.long_running": ("pos", 0, 30 * 86400), "thresholds.stuck_after": ("pos", 0, 366 * 86400),
    "thresholds.failed_per_hour": ("int", 0, 10**9), "cache.job_status": ("int", 1, 30 * 86400),
    "cache.stats": ("int", 1, 30 * 86400), "cache.config": ("int", 1, 30 * 86400),
    "worker.job_timeout": ("int", 1, 30 * 86400), "worker.result_ttl": ("int", 0, 366 * 86400),
    "worker.failure_ttl": ("int", 1, 366 * 86400), "worker.history_batch": ("int", 1, 100_000),
    "console.refresh": ("float", 0.1, 3600), "lanes.high.delay": ("float", 0, 366 * 86400),
}
TOML_BAD = {
    "int": st.one_of(st.sampled_from(["0", "-1", "9223372036854775807", "-9223372036854775808", "1.5", "nan", "inf",
                                      "true", '"5"', "[]"]), st.integers(-10**18, -2).map(str),
                     st.integers(366 * 86400 * 30, 2**63 - 1).map(str)),
    "float": st.sampled_from(["nan", "inf", "-inf", "1e300", "-1", "0", "0.01", "true", '"1"', "[1]", "1e20"]),
    "pos": st.sampled_from(["nan", "inf", "-inf", "1e300", "-1", "0", "-0.0", "true", '"1"', "1e20", "{a=1}"]),
}
CONFIG_TEXTS = st.sampled_from([
    "[worker]\nqueues = []\n", "[worker]\nqueues = ['']\n", "[worker]\nqueues = ['nosuch']\n",
    "[worker]\nqueues = ['a b']\n", "[worker]\nqueues = 'default'\n", "[limits]\nnosuch = 5\n",
    "[limits]\n'' = 5\n", "[limits]\ndefault = 1e3\n", "[limits]\ndefault = 99999999999\n",
    "[lanes.high]\nqueue = ''\n", "[lanes.high]\nqueue = 'x/y'\n", "[lanes.high]\ndelay = inf\n",
    "[lanes.low]\ndelay = 1e300\n", "[lanes.normal]\ndelay = nan\n", "[redis]\nurl = 'http://x'\n",
    "[database]\nurl = 'mysql://x'\n", "read_only = 'maybe'\n", "read_only = 1\n", "[dispatch]\nallow = 'x'\n",
    "[dispatch]\nallow = [1]\n", "[permissions]\nallow = ['explode']\n", "[queues]\nextra = ['a b']\n",
    "[thresholds.queue_size]\nnosuch = 5\n", "[thresholds.queue_size]\ndefault = -1\n", 'data_dir = "\\u0000"\n',
])


@FAST
@given(key=st.sampled_from(sorted(CONFIG_KEYS)), data=st.data())
def test_config_values(tmp_path: Path, key: str, data: st.DataObject) -> None:
    section, _, name = key.rpartition(".")
    kind, lo, hi = CONFIG_KEYS[key]
    value = data.draw(TOML_BAD[kind].filter(lambda text: not _in_range(text, kind, lo, hi)))
    _bad_config(tmp_path, f"[{section}]\n{name} = {value}\n", name)


@FAST
@given(text=CONFIG_TEXTS)
def test_config_tables(tmp_path: Path, text: str) -> None:
    _bad_config(tmp_path, text, None)


def _in_range(text: str, kind: str, lo: float, hi: float) -> bool:
    """Whether TOML `text` is a valid value of that kind and range (then it is no bad input)."""
    import math
    import tomllib

    value = tomllib.loads(f"x = {text}")["x"]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind == "int" and isinstance(value, float)):
        return False
    return math.isfinite(value) and (lo < value if kind == "pos" else lo <= value) and value <= hi


def _bad_config(tmp_path: Path, text: str, key: str | None) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text, encoding="utf-8")
    error: BaseException | None = None
    try:
        Settings.load(cfg, env={})
    except Exception as exc:  # noqa: BLE001
        error = exc
    ours = isinstance(error, ConfigError)
    tally("config file", traceback_=error is not None and not ours, wrong_exit=error is None,
          lines=len(str(error).splitlines()) if ours else 1)
    assert error is not None, f"accepted: {text!r}"
    assert ours, "".join(traceback.format_exception(error))
    assert str(cfg) in str(error) and "\n" not in str(error)
    if key:
        assert key in str(error)


def test_config_through_the_cli(servers: list[str], redis_url: str, database_url: str, tmp_path: Path) -> None:
    for n, text in enumerate(["[lanes.high]\ndelay = inf\n", "[worker]\nresult_ttl = 9223372036854775807\n",
                              "[console]\nrefresh = 0\n", "[worker]\nhistory_batch = 0\n", "[worker]\nqueues = []\n"]):
        cfg = tmp_path / f"c{n}.toml"
        cfg.write_text(text)
        run_cli("config file", ["--config", str(cfg), *servers, "limit"], redis_url, database_url)


# ---- Python API ------------------------------------------------------------------------------------
@pytest.fixture
def api(redis_url: str, database_url: str) -> Iterator[Engine]:
    eng = Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url))
    yield eng
    eng.close()


ANY_BAD = st.one_of(NASTY_TEXT, st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2),
                    st.booleans(), st.just(b"bytes"), st.sampled_from(["a b", "../x", "x" * 129, ""]))
DELAYS = st.one_of(st.floats(allow_nan=True).filter(lambda x: not 0 <= x <= v.MAX_DELAY),
                   st.just(float("nan")), st.integers(10**8, 10**400), st.integers(max_value=-1), st.just("5"),
                   st.just(True))


def _bad_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.sampled_from([{"func": 1}, {"a\ud800": 1}, {"a b": 1}, {"": 1}, {"x" * 101: 1}]),
        st.builds(lambda s: {"x": s}, NASTY_TEXT.filter(lambda s: any(0xD800 <= ord(c) <= 0xDFFF for c in s))),
        st.integers(4301, 5000).map(lambda n: {"x": 10**n}),
        st.integers(65, 400).map(lambda n: {"x": _nest(n)}),
    )


def _nest(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


@FAST
@given(call=st.one_of(
    st.tuples(st.just("type"), st.one_of(NASTY_TEXT, st.integers(), st.just(""), st.just(b"x"))),
    st.tuples(st.just("priority"), st.one_of(NASTY_TEXT, st.integers(), st.none(), SAFE_TEXT)),
    st.tuples(st.just("func"), st.one_of(PATHLIKE, st.integers(), st.none(), st.just("tests.engine.nope:add"),
                                         st.just("tests.engine.jobs:missing"), st.just("json:nope"))),
    st.tuples(st.just("kwargs"), _bad_kwargs()),
))
def test_api_dispatch(api: Engine, redis_url: str, database_url: str, call: tuple[str, Any]) -> None:
    what, value = call
    if what == "priority" and value in ("critical", "high", "normal", "low"):
        value = value.upper()
    if what == "type":
        call_api("API: dispatch", lambda: api.dispatch(jobs.add, 1, 2, type=value), redis_url, database_url)
    elif what == "priority":
        call_api("API: dispatch", lambda: api.dispatch(jobs.add, 1, 2, priority=value), redis_url, database_url)
    elif what == "func":
        call_api("API: dispatch", lambda: api.dispatch(value, priority="critical"), redis_url, database_url)
    else:
        call_api("API: dispatch", lambda: api.dispatch("tests.engine.jobs:add", 1, **value), redis_url, database_url)


@FAST
@given(bad=st.one_of(DELAYS.map(lambda d: JobSpec(jobs.add, (1, 2), delay=d)),
                     ANY_BAD.map(lambda i: JobSpec(jobs.add, (1, 2), job_id=i)).filter(lambda s: s.job_id is not None),
                     _bad_kwargs().map(lambda k: JobSpec(jobs.add, (1,), k)),
                     st.just(JobSpec(jobs.add, "12")), st.just("not a spec"),  # type: ignore[arg-type]
                     st.just(JobSpec(jobs.add, (1, 2), job_id="dup"))),
       good=st.integers(0, 4), where=st.integers(0, 4))
def test_api_dispatch_many_is_all_or_nothing(api: Engine, redis_url: str, database_url: str, bad: Any, good: int,
                                             where: int) -> None:
    batch: list[Any] = [JobSpec(jobs.add, (n, n), priority="critical") for n in range(good)]
    if isinstance(bad, JobSpec) and bad.job_id == "dup":
        batch.append(JobSpec(jobs.add, (0, 0), job_id="dup"))
    batch.insert(min(where, len(batch)), bad)
    call_api("API: dispatch_many (one bad spec)", lambda: api.dispatch_many(batch), redis_url, database_url)


@FAST
@given(method=st.sampled_from(["retry", "cancel", "job_status", "audit_for_job", "job_text"]), value=ANY_BAD)
def test_api_job_ids(api: Engine, redis_url: str, database_url: str, method: str, value: Any) -> None:
    fn = getattr(api, method)
    call = (lambda: fn(value, "traceback")) if method == "job_text" else (lambda: fn(value))
    call_api("API: operator calls", call, redis_url, database_url)


@FAST
@given(call=st.one_of(
    st.tuples(st.just("failed_jobs"), st.fixed_dictionaries({"search": st.one_of(
        NASTY_TEXT, st.integers(), st.just(["x"]), st.just(b"x"))})),
    st.tuples(st.just("failed_jobs"), st.fixed_dictionaries({"limit": st.one_of(
        st.integers(max_value=0), st.integers(100_001), st.just("5"), st.just(1.5), st.none())})),
    st.tuples(st.just("failed_jobs"), st.fixed_dictionaries({"before": st.one_of(st.integers(), st.just(("x", 1)))})),
    st.tuples(st.just("failure_groups"), st.fixed_dictionaries({"search": st.one_of(NASTY_TEXT, st.integers())})),
    st.tuples(st.just("stuck_jobs"), st.fixed_dictionaries({"limit": st.one_of(st.integers(max_value=0),
                                                                              st.just(2**63))})),
    st.tuples(st.just("retry_group"), st.fixed_dictionaries({"fingerprint": st.one_of(NASTY_TEXT, st.integers())})),
    st.tuples(st.just("retry_filtered"), st.fixed_dictionaries({"search": st.one_of(NASTY_TEXT, st.none())})),
    st.tuples(st.just("set_limit"), st.fixed_dictionaries({"queue": QUEUE_BAD, "per_minute": st.just(5)})),
    st.tuples(st.just("set_limit"), st.fixed_dictionaries({"queue": st.just("default"), "per_minute": st.one_of(
        st.integers(max_value=-1), st.integers(10**9 + 1), st.floats(), st.just("5"), st.just(True))})),
    st.tuples(st.just("reset_limit"), st.fixed_dictionaries({"queue": QUEUE_BAD})),
    st.tuples(st.just("job_detail"), st.fixed_dictionaries({"job_id_or_prefix": st.one_of(
        NASTY_TEXT, st.integers()), "max_text": st.just(100)})),
    st.tuples(st.just("job_detail"), st.fixed_dictionaries({"job_id_or_prefix": st.just("x"), "max_text": st.one_of(
        st.integers(max_value=0), st.just("5"), st.floats())})),
    st.tuples(st.just("worker"), st.fixed_dictionaries({"queues": st.one_of(
        st.just([]), st.just("default"), QUEUE_BAD.map(lambda q: ["default", q]))})),
    st.tuples(st.just("prune"), st.fixed_dictionaries({"older_than": st.one_of(
        st.floats().filter(lambda x: not 0 < x <= v.MAX_AGE), st.integers(10**12), st.just("7d"))})),
    st.tuples(st.just("prune"), st.fixed_dictionaries({"older_than": st.just(60), "batch_size": st.one_of(
        st.integers(max_value=0), st.integers(10**6 + 1))})),
))
def test_api_operator_calls(api: Engine, redis_url: str, database_url: str, call: tuple[str, dict[str, Any]]) -> None:
    method, kwargs = call
    if method == "set_limit" and kwargs["queue"] in QUEUES and kwargs["per_minute"] == 5:
        kwargs = {**kwargs, "queue": kwargs["queue"] + "?"}
    if method in ("reset_limit",) and kwargs["queue"] in QUEUES:
        kwargs = {"queue": kwargs["queue"] + "?"}
    if method == "worker" and isinstance(kwargs["queues"], list) and len(kwargs["queues"]) == 2 \
            and kwargs["queues"][1] in QUEUES:
        kwargs = {"queues": ["default", kwargs["queues"][1] + "?"]}
    fn = api.pruner().run if method == "prune" else getattr(api, method)
    call_api("API: operator calls", lambda: fn(**kwargs), redis_url, database_url)


def test_api_settings_objects() -> None:
    """Settings built from Python check themselves as the file does."""
    cases: list[dict[str, Any]] = [
        {"refresh": 0}, {"refresh": float("nan")}, {"history_batch": 0}, {"job_timeout": 0},
        {"job_timeout": 2**63 - 1}, {"result_ttl": 2**63 - 1}, {"worker_queues": ("nosuch",)},
        {"worker_queues": ("",)}, {"failed_per_hour": -5}, {"stuck_after": float("nan")},
        {"lanes": {"high": ("high", float("inf"))}}, {"lanes": {"high": ("high", 1e300)}}, {"refresh": "5"},
        {"read_only": "maybe"}, {"redis_url": "http://x"}, {"limits": {"nosuch": 5}}, {"limits": {"default": -1}},
        {"permissions": ("explode",)}, {"dispatch_allow": "x"}, {"long_running": True},
    ]
    for case in cases:
        error: BaseException | None = None
        try:
            Settings(**case)
        except Exception as exc:  # noqa: BLE001
            error = exc
        tally("API: Settings(...)", traceback_=error is not None and not isinstance(error, ConfigError),
              wrong_exit=error is None, lines=len(str(error).splitlines()) if error else 1)
        assert isinstance(error, ConfigError), (case, error)
        assert "\n" not in str(error)


# ---- what must still work --------------------------------------------------------------------------
def test_negative_numbers_and_option_named_kwargs_dispatch(servers: list[str], database_url: str) -> None:
    result = CliRunner().invoke(cli, [*servers, "dispatch", "tests.engine.jobs:add", "-3", "-4.5e1",
                                      "--priority", "critical"], env={"JOBENGINE_CONFIG": ""})
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert rows(database_url, "SELECT args FROM jobs WHERE id=%s", job_id) == [("-3, -45.0",)]
    result = CliRunner().invoke(cli, [*servers, "dispatch", "tests.engine.jobs:noop", "--kwargs",
                                      '{"type": "x", "priority": 1, "func": 2}'], env={"JOBENGINE_CONFIG": ""})
    assert result.exit_code == 0, result.output  # the CLI passes kwargs in a JobSpec: no collision
    assert rows(database_url, "SELECT args FROM jobs WHERE id=%s", result.stdout.strip()) == [
        ("type='x', priority=1, func=2",)]


def test_reserved_kwargs_point_to_jobspec(api: Engine) -> None:
    with pytest.raises(JobEngineError, match=r"'func' is reserved by Engine.dispatch.*JobSpec"):
        api.dispatch(jobs.add, 1, func=2)
    [job_id] = api.dispatch_many([JobSpec(jobs.noop, kwargs={"type": 1, "priority": 2, "func": 3})])
    assert job_id


def test_bad_input_in_a_subprocess_prints_no_traceback(redis_url: str, database_url: str) -> None:
    """The real entry point, with bytes that are not UTF-8 as --type and a 5,000-digit argument."""
    env = {k: val for k, val in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(PYTHONPATH=str(ROOT), JOBENGINE_CONFIG="")
    base = [sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url", database_url]
    before = state(redis_url, database_url)
    for extra in ([b"dispatch", b"tests.engine.jobs:add", b"1", b"2", b"--type", b"\xff\xfe"],
                  [b"dispatch", b"tests.engine.jobs:add", b"9" * 5000, b"1"],
                  [b"prune", b"--older-than", b"99999999999d"]):
        done = subprocess.run([*map(os.fsencode, base), *extra], capture_output=True, env=env, cwd=ROOT, timeout=60)
        err = done.stderr.decode("utf-8", "replace")
        tally("CLI: subprocess smoke", traceback_="Traceback" in err, wrong_exit=done.returncode != 2,
              lines=len(err.strip().splitlines()))
        assert done.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert state(redis_url, database_url) == before


def test_zz_table() -> None:
    """The closing note's table (run with -s to see it); every count but `tried` is 0."""
    assert TALLY, "run the whole module"
    header = f"{'input kind':36} {'tried':>6} {'tracebacks':>10} {'wrong exits':>11} {'partial writes':>14} " \
             f"{'not one line':>12}"
    lines = [header, "-" * len(header)]
    total = [0, 0, 0, 0, 0]
    for kind, row in sorted(TALLY.items()):
        lines.append(f"{kind:36} {row[0]:>6} {row[1]:>10} {row[2]:>11} {row[3]:>14} {row[4]:>12}")
        total = [a + b for a, b in zip(total, row, strict=True)]
    lines.append(f"{'total':36} {total[0]:>6} {total[1]:>10} {total[2]:>11} {total[3]:>14} {total[4]:>12}")
    print("\n" + "\n".join(lines))
    assert total[1:] == [0, 0, 0, 0]
