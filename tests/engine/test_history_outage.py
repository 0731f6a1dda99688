"""A stopped PostgreSQL neither slows nor stops job processing, and every event arrives later."""

from __future__ import annotations

import psycopg
import pytest

from jobengine import Engine, JobSpec
from jobengine.errors import StoreUnavailable
from tests.conftest import dbname_of, pg_url
from tests.engine import jobs
from tests.engine.helpers import run_until_idle, scalar


def _block_connections(database_url: str, allow: bool) -> None:
    name = dbname_of(database_url)
    with psycopg.connect(pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_jobs_run_through_a_postgres_outage_and_history_catches_up(fast_engine: Engine,
                                                                  database_url: str) -> None:
    ids = fast_engine.dispatch_many([JobSpec(jobs.mixed, (n,), priority="critical") for n in range(1, 41)])
    fast_engine.store.close()  # drop pooled connections so the outage is felt at once
    _block_connections(database_url, allow=False)
    try:
        writer = fast_engine.history_writer()
        run_until_idle(fast_engine)  # the workers never touch PostgreSQL
        finished = sum(1 for n in range(1, 41) if n % 7 and n % 5)
        assert fast_engine.connection.zcard("rq:finished:critical") == finished
        waiting = fast_engine.connection.xlen("jobengine:events")
        assert waiting >= 40  # every run's end (fast runs carry their start) buffered in Redis
        with pytest.raises(StoreUnavailable, match="unreachable"):
            writer.drain()  # PostgreSQL is down: the events stay
        assert fast_engine.connection.xlen("jobengine:events") == waiting
    finally:
        _block_connections(database_url, allow=True)
    written = fast_engine.flush_history()
    assert fast_engine.connection.xlen("jobengine:events") == 0
    assert written == scalar(database_url, "SELECT count(*) FROM job_logs") >= waiting
    assert scalar(database_url, "SELECT count(*) FROM jobs WHERE status='finished'") == finished
    assert scalar(database_url, "SELECT count(*) FROM jobs") == len(ids)
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE kind='started'") == \
        scalar(database_url, "SELECT sum(attempts) FROM jobs")
    assert fast_engine.flush_history() == 0  # nothing twice


def test_dispatch_survives_a_postgres_outage(fast_engine: Engine, database_url: str) -> None:
    fast_engine.store.close()
    _block_connections(database_url, allow=False)
    try:
        job_id = fast_engine.dispatch(jobs.add, 1, 1, type="sum", priority="critical")
        run_until_idle(fast_engine)
    finally:
        _block_connections(database_url, allow=True)
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT status || ':' || type FROM jobs WHERE id=%s", job_id) == "finished:sum"
