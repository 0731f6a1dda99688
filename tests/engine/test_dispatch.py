"""Dispatch: lanes and delays, validation before any write, jobs rows, plain-RQ compatibility."""

from __future__ import annotations

import threading
import time

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from jobengine.errors import JobFunctionError, RedisUnavailable, SerializationError, UnknownPriorityError
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle, scalar


def test_high_priority_lands_on_high_with_its_delay(engine: Engine, database_url: str) -> None:
    before = time.time()
    job_id = engine.dispatch("tests.engine.jobs:add", 1, 2, type="math", priority="high")
    registry = ScheduledJobRegistry("high", connection=engine.connection)
    assert job_id in registry.get_job_ids()
    run_at = registry.get_scheduled_time(job_id).timestamp()
    assert before + 4 <= run_at <= time.time() + 5.5  # RQ stores whole seconds
    assert Queue("high", connection=engine.connection).count == 0  # not runnable before the delay
    row = rows(database_url, "SELECT type, queue, priority, status, attempts, func FROM jobs WHERE id=%s", job_id)
    assert row == [("math", "high", 2, "scheduled", 0, "tests.engine.jobs.add")]


def test_critical_is_queued_at_once(engine: Engine, database_url: str) -> None:
    job_id = engine.dispatch(jobs.add, 2, 3, priority="critical")
    assert Queue("critical", connection=engine.connection).job_ids == [job_id]
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "queued"
    assert scalar(database_url, "SELECT type FROM jobs WHERE id=%s", job_id) == "add"


@pytest.mark.parametrize("priority,queue,delay", [("normal", "default", 30), ("low", "low", 300)])
def test_lane_defaults_follow_the_specification(engine: Engine, priority: str, queue: str,
                                                delay: int) -> None:
    job_id = engine.dispatch(jobs.noop, priority=priority)
    when = ScheduledJobRegistry(queue, connection=engine.connection).get_scheduled_time(job_id)
    assert abs(when.timestamp() - time.time() - delay) < 2


def _nothing_written(engine: Engine, database_url: str) -> None:
    assert engine.connection.dbsize() == 0
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 0


def test_unknown_priority_writes_nothing(engine: Engine, database_url: str) -> None:
    with pytest.raises(UnknownPriorityError, match="unknown priority 'urgent'"):
        engine.dispatch(jobs.add, 1, 2, priority="urgent")
    _nothing_written(engine, database_url)


@pytest.mark.parametrize("func", ["tests.engine.nope:add", "tests.engine.jobs:missing", "add",
                                  lambda: None])
def test_unimportable_function_writes_nothing(engine: Engine, database_url: str, func: object) -> None:
    with pytest.raises(JobFunctionError):
        engine.dispatch(func, priority="critical")  # type: ignore[arg-type]
    _nothing_written(engine, database_url)


def test_unserialisable_arguments_write_nothing(engine: Engine, database_url: str) -> None:
    with pytest.raises(SerializationError, match="cannot be serialised"):
        engine.dispatch(jobs.add, threading.Lock(), 1, priority="critical")
    _nothing_written(engine, database_url)


def test_dispatch_many_is_all_or_nothing(engine: Engine, database_url: str) -> None:
    specs = [JobSpec(jobs.add, (i, i), priority="critical") for i in range(5)]
    with pytest.raises(UnknownPriorityError):
        engine.dispatch_many([*specs, JobSpec(jobs.add, (1, 1), priority="nope")])
    _nothing_written(engine, database_url)
    ids = engine.dispatch_many(specs)
    assert len(set(ids)) == 5
    assert scalar(database_url, "SELECT count(*) FROM jobs WHERE status='queued'") == 5
    assert Queue("critical", connection=engine.connection).job_ids == ids


def test_a_dispatch_redis_refuses_writes_nothing(private_redis: str, database_url: str) -> None:
    """Jobs go to Redis before their rows go to PostgreSQL: a refused MULTI leaves neither."""
    with Engine(Settings.load(env={}, redis_url=private_redis, database_url=database_url)) as eng:
        eng.connection.config_set("maxmemory-policy", "noeviction")
        eng.connection.config_set("maxmemory", 1)  # every write is refused with OOM
        with pytest.raises(RedisUnavailable, match="unreachable"):
            eng.dispatch_many([JobSpec(jobs.add, (i, i), priority="critical") for i in range(3)])
        eng.connection.config_set("maxmemory", 0)
        assert scalar(database_url, "SELECT count(*) FROM jobs") == 0
        assert eng.connection.keys("rq:*") == []
        job_id = eng.dispatch(jobs.add, 1, 1, priority="critical")  # and it works again
        assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "queued"


def test_dispatch_returns_with_the_row_written(engine: Engine, database_url: str) -> None:
    """The row is in PostgreSQL when dispatch returns, with what reconcile needs to re-create it."""
    job_id = engine.dispatch(jobs.add, 2, 3, type="sum", priority="high")
    assert rows(database_url, "SELECT type, func, status, payload IS NOT NULL, options->>'timeout' FROM jobs "
                "WHERE id=%s", job_id) == [("sum", "tests.engine.jobs.add", "scheduled", True, "180")]


def test_dispatch_many_mixes_delayed_and_immediate_jobs(engine: Engine, database_url: str) -> None:
    """A delayed spec before an immediate one (the demo producer's mix) in one batch."""
    ids = engine.dispatch_many([JobSpec(jobs.add, (1, 1), priority="high"),
                                JobSpec(jobs.add, (2, 2), priority="critical"),
                                JobSpec(jobs.add, (3, 3), priority="critical", delay=5),
                                JobSpec(jobs.add, (4, 4), priority="low", delay=0)])
    conn = engine.connection
    assert ScheduledJobRegistry("high", connection=conn).get_job_ids() == [ids[0]]
    assert ScheduledJobRegistry("critical", connection=conn).get_job_ids() == [ids[2]]
    assert Queue("critical", connection=conn).job_ids == [ids[1]]
    assert Queue("low", connection=conn).job_ids == [ids[3]]
    assert [Job.fetch(j, connection=conn).get_status() for j in ids] == ["scheduled", "queued", "scheduled", "queued"]
    assert [scalar(database_url, "SELECT status FROM jobs WHERE id=%s", j) for j in ids] == \
        ["scheduled", "queued", "scheduled", "queued"]


def test_plain_rq_jobs_run_on_our_worker(fast_engine: Engine, database_url: str) -> None:
    plain = Queue("default", connection=fast_engine.connection).enqueue(jobs.add, 20, 22)
    run_until_idle(fast_engine)
    job = Job.fetch(plain.id, connection=fast_engine.connection)
    assert job.get_status() == "finished"
    assert job.return_value() == 42
    fast_engine.flush_history()
    # the engine never saw the dispatch, but the worker's events still give it a history row
    assert rows(database_url, "SELECT status, queue, type, attempts FROM jobs WHERE id=%s", plain.id) == [
        ("finished", "default", "add", 1)]
