"""An engine (and `jobtui dispatch`) made while PostgreSQL is down works; the first history writer
that reaches PostgreSQL applies the migrations, and the row travels as an event."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner

from jobengine import Engine
from jobengine.config import Settings
from jobengine.errors import StoreUnavailable
from jobengine.store.sqlfile import migrations
from jobtui.cli import cli
from tests.conftest import pg_url
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES
from tests.engine.helpers import rows, run_until_idle


def _allow(name: str, allow: bool) -> None:
    with psycopg.connect(pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database without the schema, refusing connections (PostgreSQL "down" for it)."""
    name = f"jobtui_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    _allow(name, False)
    yield name
    with psycopg.connect(pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_engine_made_during_an_outage_dispatches_and_the_writer_migrates_later(redis_url: str,
                                                                              empty_database: str) -> None:
    url = pg_url(empty_database)
    settings = Settings.load(env={}, redis_url=redis_url, database_url=url, lanes=dict(ZERO_DELAY_LANES))
    started = time.monotonic()
    with Engine(settings) as engine:  # no migration check stops it
        assert time.monotonic() - started < 2
        job_id = engine.dispatch(jobs.add, 1, 2, type="sum", priority="critical")
        run_until_idle(engine)
        report = engine.health()
        assert report.verdict == "failing" and not report.postgres_ok and report.redis_ok
        assert report.reasons[0].startswith(f"PostgreSQL at 127.0.0.1:5432/{empty_database} is unreachable")
        with pytest.raises(StoreUnavailable):
            engine.flush_history()
        _allow(empty_database, True)
        assert engine.flush_history() >= 2  # queued (the row) + the run
    assert rows(url, "SELECT status, type FROM jobs WHERE id = %s", job_id) == [("finished", "sum")]
    assert [r[0] for r in rows(url, "SELECT name FROM schema_migrations ORDER BY name")] == \
        [name for name, _ in migrations()]


def test_jobtui_dispatch_works_while_postgres_is_down(redis_url: str, empty_database: str) -> None:
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "--database-url", pg_url(empty_database),
                                      "dispatch", "tests.engine.jobs:noop", "--priority", "critical"])
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip().splitlines()[-1]
    settings = Settings.load(env={}, redis_url=redis_url, database_url=pg_url(empty_database))
    with Engine(settings) as engine:  # a worker's engine, also made during the outage
        assert engine.connection.exists(f"rq:job:{job_id}")
        _allow(empty_database, True)
        assert engine.flush_history() == 1  # its writer's first batch applies the migrations
    assert rows(pg_url(empty_database), "SELECT status FROM jobs WHERE id = %s", job_id) == [("queued",)]
