"""Read-only and `[permissions] allow` hold in the engine (whatever calls it, the CLI too); every
operator action leaves its audit row; `[dispatch] allow` holds at dispatch and at the workers;
`job_detail(max_text=...)` bounds huge texts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from rq import Queue

from jobengine import keys
from jobengine.config import Settings
from jobengine.dispatch import JobSpec
from jobengine.engine import Engine
from jobengine.errors import JobFunctionError, OperationRefused
from jobengine.history import event_fields
from jobengine.types import EventKind
from jobtui.cli import cli
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES
from tests.engine.helpers import rows, run_until_idle, scalar


def _state(engine: Engine, database_url: str) -> tuple[Any, ...]:
    """Every Redis key with its type and size, and the counts of every history table."""
    conn = engine.connection
    keys = sorted(k.decode() for k in conn.keys("*"))
    sizes = []
    for k in keys:
        kind = conn.type(k).decode()
        sizes.append((k, kind, {"list": conn.llen, "zset": conn.zcard, "set": conn.scard, "hash": conn.hlen,
                                "string": conn.strlen, "stream": conn.xlen}.get(kind, lambda _k: 0)(k)))
    with psycopg.connect(database_url) as pg:
        counts = tuple(pg.execute(f"SELECT count(*) FROM {t}").fetchone()  # noqa: S608
                       for t in ("jobs", "job_logs", "failed_jobs", "audit_log"))
    return tuple(sizes), counts


def _park_a_dead_letter(engine: Engine) -> None:
    """An event PostgreSQL refuses (a NUL byte): the next flush parks it as a dead letter."""
    fields = event_fields(EventKind.QUEUED, "poison-1", "default", type="re\x00port")
    engine.connection.xadd(keys.EVENTS_STREAM, fields)  # type: ignore[arg-type]
    engine.flush_history()
    assert engine.connection.xlen(keys.EVENTS_DEAD) == 1


@pytest.fixture
def pair(redis_url: str, database_url: str) -> Iterator[tuple[Engine, Engine]]:
    """(a read-write engine, a read-only engine) on the same servers, with a failed, a queued and
    a finished job in place."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES))
    rw = Engine(settings)
    ro = Engine(replace(settings, read_only=True))
    yield rw, ro
    ro.close()
    rw.close()


def test_read_only_refuses_every_operator_action(pair: tuple[Engine, Engine], database_url: str) -> None:
    rw, ro = pair
    failed = rw.dispatch(jobs.broken, priority="high")
    rw.dispatch(jobs.add, 1, 2)
    run_until_idle(rw)
    queued = rw.dispatch(jobs.noop, priority="low")
    _park_a_dead_letter(rw)
    rw.flush_history()
    [group] = rw.failure_groups()
    actions: dict[str, Callable[[], Any]] = {
        "dispatch": lambda: ro.dispatch(jobs.noop),
        "dispatch_many": lambda: ro.dispatch_many([JobSpec(jobs.noop)]),
        "retry": lambda: ro.retry(failed),
        "cancel": lambda: ro.cancel(queued),
        "retry_group": lambda: ro.retry_group(group.fingerprint),
        "retry_filtered": lambda: ro.retry_filtered("ValueError"),
        "cancel_filtered": lambda: ro.cancel_filtered("type:noop"),
        "bulk": lambda: ro.bulk("cancel", None),
        "pause": lambda: ro.pause("default"),
        "resume": lambda: ro.resume("default"),
        "run_now": lambda: ro.run_now(queued),
        "reconcile": lambda: ro.reconciler().run(),
        "dead letters: retry": lambda: ro.dead_letters().retry(),
        "dead letters: drop": lambda: ro.dead_letters().drop(),
        "set_limit": lambda: ro.set_limit("default", 0),
        "reset_limit": lambda: ro.reset_limit("default"),
        "prune": lambda: ro.pruner().run(1),
        "prune, bad id too": lambda: ro.retry("not an id"),  # refused before the id is even looked at
    }
    before = _state(rw, database_url)
    for name, action in actions.items():
        with pytest.raises(OperationRefused, match=r"^\w+ refused: the engine is in read-only mode$"):
            action()
        assert _state(rw, database_url) == before, name
    ro.pruner().run(1, dry_run=True)  # a dry run is a read
    assert ro.failed_jobs() and ro.job_detail(failed) is not None  # reads work


def test_workers_of_a_read_only_engine_still_run(pair: tuple[Engine, Engine], database_url: str) -> None:
    rw, ro = pair
    job_id = rw.dispatch(jobs.add, 2, 3)
    ro.worker().work(burst=True, logging_level="WARNING")
    rw.flush_history()
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "finished"


def test_permissions_allow_only_the_listed_actions(redis_url: str, database_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text('[permissions]\nallow = ["retry", "dispatch"]\n[queues]\nextra = ["reports"]\n')
    settings = Settings.load(cfg, env={}, redis_url=redis_url, database_url=database_url,
                             lanes=dict(ZERO_DELAY_LANES))
    with Engine(settings) as engine:
        job_id = engine.dispatch(jobs.broken, priority="high")
        run_until_idle(engine)
        assert engine.retry(job_id) is True
        with pytest.raises(OperationRefused, match=r"cancel refused: \[permissions\] allow lists only retry, dispatch"):
            engine.cancel(job_id)
        with pytest.raises(OperationRefused, match="limit refused"):
            engine.set_limit("reports", 5)  # an extra queue, but limits are not allowed
        with pytest.raises(OperationRefused, match="prune refused"):
            engine.pruner().run(60)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"JOBENGINE_CONFIG": ""})


@pytest.mark.parametrize("args", [
    ["dispatch", "tests.engine.jobs:noop"],
    ["limit", "default", "5"],
    ["limit", "default", "--reset"],
    ["prune", "--older-than", "1s"],
    ["worker", "--burst", "--prune-every", "1h"],
    ["reconcile"],
    ["retry", "{failed}"],
    ["cancel", "{queued}"],
    ["pause", "default"],
    ["resume", "{paused}"],
    ["retry", "--filter", "error:ValueError"],
    ["cancel", "--filter", "type:noop"],
    ["history", "dead-letters", "--retry"],
    ["history", "dead-letters", "--drop"],
])
def test_read_only_cli_refuses_in_one_line(redis_url: str, database_url: str, args: list[str]) -> None:
    """{failed}, {queued}, {paused}: a failed job, a queued one, a paused queue, made first (the
    refused command would act on them)."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES))
    with Engine(settings) as engine:
        made: dict[str, str] = {}
        if "{failed}" in args or "--filter" in args:
            made["failed"] = engine.dispatch(jobs.broken, priority="high")
            run_until_idle(engine)
            made["queued"] = engine.dispatch(jobs.noop, type="noop", priority="low")
            engine.flush_history()
            assert engine.count_filtered("retry", "error:ValueError") == 1
            assert engine.count_filtered("cancel", "type:noop") == 1
        if "{queued}" in args:
            made["queued"] = engine.dispatch(jobs.noop, priority="low")
        if "dead-letters" in args:
            _park_a_dead_letter(engine)
        if "{paused}" in args:
            engine.pause("high")
            made["paused"] = "high"
        args = [a.format(**made) for a in args]
        before = _state(engine, database_url)
        result = _cli("--read-only", "--redis-url", redis_url, "--database-url", database_url, *args)
        assert result.exit_code == 2, result.output
        assert "refused" in result.stderr and "read-only mode" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert _state(engine, database_url) == before


# ---- audit -----------------------------------------------------------------------------------------
def test_every_operator_action_leaves_its_audit_row(redis_url: str, database_url: str) -> None:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES))
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    with Engine(settings) as engine:
        result = _cli(*servers, "dispatch", "tests.engine.jobs:broken", "7", "--priority", "critical")
        assert result.exit_code == 0, result.output
        dispatched = result.stdout.strip()
        others = [engine.dispatch(jobs.broken, n, priority="high") for n in range(3)]
        run_until_idle(engine)
        engine.flush_history()
        engine.retry(dispatched)
        [group] = engine.failure_groups()
        assert engine.retry_group(group.fingerprint) == 3
        run_until_idle(engine)
        engine.flush_history()
        assert engine.retry_filtered("bad value") == 4
        waiting = engine.dispatch(jobs.noop, priority="low")
        engine.cancel(waiting)
        engine.set_limit("default", 5)
        engine.reset_limit("default")
        report = engine.pruner().run(1)
        actions = rows(database_url, "SELECT action, job_id, detail FROM audit_log ORDER BY id")
        by_action: dict[str, list[tuple[Any, ...]]] = {}
        for action, job_id, detail in actions:
            by_action.setdefault(action, []).append((job_id, detail))
        assert by_action["dispatch"] == [(dispatched, "")]  # the CLI's dispatch is an operator's
        retried = [j for j, _ in by_action["retry"]]  # one, then the group's three (the filter: one row)
        assert retried[0] == dispatched and sorted(retried[1:]) == sorted(others)
        assert by_action["retry_group"] == [(None, f"group {group.fingerprint}: 3 of 3 job(s) retried")]
        assert by_action["retry_filtered"] == [(None, "filter 'bad value': 4 of 4 job(s) retried")]
        assert by_action["cancel"] == [(waiting, "")]
        assert [d for _, d in by_action["limit"]] == ["default=5", "default=config"]
        [(none, detail)] = by_action["prune"]
        assert none is None and detail.startswith("older than 1s (failed 1s): ")
        assert f"{report.jobs} jobs" in detail and f"{report.rq_finished} finished" in detail

        # jobtui audit lists them; --since and --job narrow them; audit_for_job feeds the job's detail
        listed = json.loads(_cli(*servers, "audit", "--json").stdout)
        assert [r["action"] for r in listed] == [a for a, _, _ in reversed(actions)]
        with psycopg.connect(database_url) as pg:
            pg.execute("INSERT INTO audit_log (at, action, detail) VALUES (now() - interval '2 days', 'old', 'x')")
        assert "old" not in [r["action"] for r in json.loads(_cli(*servers, "audit", "--json").stdout)]
        assert "old" in [r["action"] for r in json.loads(_cli(*servers, "audit", "--json", "--since", "3d").stdout)]
        for_job = engine.audit_for_job(dispatched)
        assert [r["action"] for r in for_job] == ["dispatch", "retry"]  # the filter's retry: its job log says
        assert [r["action"] for r in json.loads(_cli(*servers, "audit", "--json", "--job", dispatched).stdout)] == \
            ["retry", "dispatch"]  # newest first, as the listing
        text = _cli(*servers, "audit").stdout
        assert "retry_group" in text and "prune" in text
        old = datetime.now(UTC) + timedelta(seconds=5)
        assert engine.audit_entries(since=old) == []


# ---- [dispatch] allow ------------------------------------------------------------------------------
@pytest.fixture
def allowed(redis_url: str, database_url: str) -> Iterator[Engine]:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES),
                             dispatch_allow=("tests.engine.jobs.add", "tests.engine.jobs:broken"))
    with Engine(settings) as engine:
        yield engine


def test_dispatch_refuses_functions_outside_the_allow_list(allowed: Engine, database_url: str) -> None:
    assert allowed.dispatch(jobs.add, 1, 2) and allowed.dispatch("tests.engine.jobs.broken")
    before = _state(allowed, database_url)
    for func in (jobs.noop, "os:system", "builtins:eval", "tests.engine.jobs.add.__globals__", "tests.engine:jobs"):
        with pytest.raises(JobFunctionError, match=r"is not in \[dispatch\] allow"):
            allowed.dispatch(func, "echo hi")  # type: ignore[arg-type]
    with pytest.raises(JobFunctionError):  # one bad spec: the batch writes nothing
        allowed.dispatch_many([JobSpec(jobs.add, (1, 2)), JobSpec(jobs.write_pid, ("/tmp/x",))])
    assert _state(allowed, database_url) == before


@pytest.mark.parametrize("kind", [{}, {"classic": True}])
def test_workers_fail_jobs_outside_the_allow_list_without_running_them(
        allowed: Engine, database_url: str, tmp_path: Path, kind: dict[str, bool]) -> None:
    marker = tmp_path / "ran.txt"
    plain = Queue("default", connection=allowed.connection)  # a plain RQ client, no allow list
    refused = plain.enqueue("tests.engine.jobs.write_pid", str(marker))
    fine = plain.enqueue("tests.engine.jobs.add", 2, 2)
    allowed.worker(**kind).work(burst=True, logging_level="CRITICAL")
    assert not marker.exists()  # never ran
    refused.refresh()
    fine.refresh()
    assert refused.get_status() == "failed" and fine.get_status() == "finished" and fine.return_value() == 4
    assert "not in [dispatch] allow" in (refused.latest_result().exc_string or "")  # type: ignore[union-attr]
    allowed.flush_history()
    assert rows(database_url, "SELECT error_class FROM failed_jobs WHERE job_id=%s", refused.id) == [
        ("jobengine.errors.JobFunctionError",)]


# ---- bounded job detail ------------------------------------------------------------------------------
def test_job_detail_bounds_huge_texts(fast_engine: Engine, database_url: str) -> None:
    job_id = fast_engine.dispatch(jobs.broken, priority="high")
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    traceback = "Traceback (most recent call last):\n" + "x" * 5_000_000
    with psycopg.connect(database_url) as pg:
        pg.execute("UPDATE failed_jobs SET traceback=%s, error_message=%s WHERE job_id=%s",
                   (traceback, "m" * 1_000_000, job_id))
        pg.execute("UPDATE jobs SET args=%s WHERE id=%s", ("a" * 1_000_000, job_id))
    detail = fast_engine.job_detail(job_id, max_text=64 * 1024)
    assert detail is not None and detail.failure is not None
    assert set(detail.truncated) == {"args", "error_message", "traceback"}
    for text in (detail.failure.traceback, detail.failure.error_message, detail.record.args or ""):
        assert len(text) < 64 * 1024 + 100 and "more of" in text.splitlines()[-1]
    assert fast_engine.job_text(job_id, "traceback") == traceback
    assert fast_engine.job_text(job_id, "args") == "a" * 1_000_000
    whole = fast_engine.job_detail(job_id)
    assert whole is not None and whole.truncated == () and whole.failure is not None
    assert whole.failure.traceback == traceback
    assert fast_engine.job_text(str(uuid.uuid4()), "traceback") is None


def test_read_only_env_values() -> None:
    """JOBENGINE_READ_ONLY takes the documented booleans, and nothing else."""
    for text, expected in (("true", True), ("YES", True), ("1", True), ("false", False), ("no", False), ("0", False)):
        assert Settings.load(env={"JOBENGINE_READ_ONLY": text}).read_only is expected
