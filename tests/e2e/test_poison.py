"""Poison input never blocks history or kills a worker; a Redis reset does not stop a writer.

A raw stream entry with a NUL in its type (as an old client would send it) among 999 good jobs;
jobs raising exceptions with a lone surrogate, a NUL and a 5 MB message in a `jobtui worker`
process; FLUSHALL on a private redis-server while a history writer thread runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobengine import Engine, JobSpec, keys
from jobengine.config import Settings
from jobengine.history import event_fields
from jobengine.runtime.jobinfo import MAX_ERROR_MESSAGE
from jobengine.types import EventKind
from tests.conftest import dbname_of, pg_url
from tests.e2e.conftest import RedisServer
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES
from tests.engine.helpers import rows, run_until_idle, scalar

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fast_engine(redis_url: str, database_url: str) -> Iterator[Engine]:
    """An engine on the test's Redis db and database, lanes without dispatch delays."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES))
    with Engine(settings) as engine:
        yield engine


def _jobtui(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "jobtui.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def _allow_connections(database_url: str, allow: bool) -> None:
    name = dbname_of(database_url)
    with psycopg.connect(pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_one_poison_event_among_a_thousand(fast_engine: Engine, redis_url: str, database_url: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    fast_engine.store.close()
    _allow_connections(database_url, False)  # the rows travel as events, in the stream with the poison
    try:
        ids = fast_engine.dispatch_many([JobSpec(jobs.add, (n, 1), priority="critical") for n in range(500)])
        poison = event_fields(EventKind.QUEUED, "poison-job", "default", type="re\x00port", priority="normal")
        fast_engine.connection.xadd(keys.EVENTS_STREAM, poison)  # type: ignore[arg-type]
        ids += fast_engine.dispatch_many([JobSpec(jobs.add, (n, 2), priority="critical") for n in range(499)])
        assert fast_engine.connection.xlen(keys.EVENTS_STREAM) == 1000
        run_until_idle(fast_engine)
    finally:
        _allow_connections(database_url, True)
    fast_engine.flush_history()
    assert fast_engine.connection.xlen(keys.EVENTS_STREAM) == 0  # nothing blocked
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 999
    assert scalar(database_url, "SELECT count(*) FROM jobs WHERE status = 'finished'") == 999
    assert fast_engine.connection.xlen(keys.EVENTS_DEAD) == 1
    health = _jobtui(*servers, "health", "--json")
    report = json.loads(health.stdout)
    assert (health.returncode, report["verdict"], report["dead_letters"]) == (0, "warning", 1)
    assert "1 history event PostgreSQL refused is parked as dead letters" in report["reasons"][0]
    listed = _jobtui(*servers, "history", "dead-letters")
    assert listed.returncode == 0 and "job poison-job  queued  PostgreSQL refused" in listed.stdout
    dropped = _jobtui(*servers, "history", "dead-letters", "--drop")
    assert dropped.returncode == 0 and "dropped 1 dead letter(s) (audited)" in dropped.stdout, dropped.stderr
    assert fast_engine.connection.xlen(keys.EVENTS_DEAD) == 0
    assert json.loads(_jobtui(*servers, "health", "--json").stdout)["verdict"] == "healthy"
    assert rows(database_url, "SELECT job_id FROM audit_log WHERE action = 'dead-letter-drop'") == [("poison-job",)]


def test_exceptions_of_any_text_never_kill_a_worker_process(fast_engine: Engine, redis_url: str,
                                                            database_url: str, tmp_path: Path) -> None:
    bad = {kind: fast_engine.dispatch(jobs.raise_message, kind, priority="critical")
           for kind in ("surrogate", "nul", "huge")}
    good = fast_engine.dispatch(jobs.add, 1, 1, priority="critical")
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text("[lanes.critical]\ndelay = 0\n")
    worker = _jobtui("--config", str(cfg), "--redis-url", redis_url, "--database-url", database_url,
                     "worker", "--burst")
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "UnicodeEncodeError" not in worker.stderr
    got = dict(rows(database_url, "SELECT job_id, error_message FROM failed_jobs"))
    assert got == {bad["surrogate"]: "bad \\udc80 surrogate", bad["nul"]: "bad \\x00 nul",
                   bad["huge"]: "x" * MAX_ERROR_MESSAGE + f"… [truncated {5_000_000 - MAX_ERROR_MESSAGE:,} chars]"}
    assert scalar(database_url, "SELECT status FROM jobs WHERE id = %s", good) == "finished"


def test_flushall_while_a_writer_runs(private_redis: RedisServer, database_url: str) -> None:
    settings = Settings.load(env={}, redis_url=private_redis.url(), database_url=database_url,
                             lanes=dict(ZERO_DELAY_LANES))
    with Engine(settings) as engine:
        writer = engine.history_writer()
        writer.start(interval=0.1)

        def run_and_wait(n: int, args: int) -> list[str]:
            ids = engine.dispatch_many([JobSpec(jobs.add, (args, i), priority="critical") for i in range(n)])
            run_until_idle(engine)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done = scalar(database_url, "SELECT count(*) FROM jobs WHERE status = 'finished' AND id = ANY(%s)",
                              ids)
                if done == n:
                    break
                time.sleep(0.1)
            return ids

        before = run_and_wait(20, 1)
        assert scalar(database_url, "SELECT count(*) FROM jobs WHERE status = 'finished'") == 20
        engine.connection.flushall()  # the stream and its consumer group are gone
        after = run_and_wait(30, 2)
        assert writer._thread is not None and writer._thread.is_alive()
        writer.stop()
    assert scalar(database_url, "SELECT count(*) FROM jobs WHERE status = 'finished' AND id = ANY(%s)", after) == 30
    assert len(before) == 20
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE kind = 'finished'") == 50
