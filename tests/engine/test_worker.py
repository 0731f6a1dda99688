"""The worker: priority order, retry policy by exception class, history that matches what ran."""

from __future__ import annotations

import time

from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from jobengine import Engine, JobSpec
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle, scalar


def test_temporary_error_leaves_one_attempt_and_a_scheduled_retry(engine: Engine, database_url: str) -> None:
    job_id = engine.dispatch(jobs.flaky_temporary, priority="critical")
    before = time.time()
    engine.worker().work(burst=True, logging_level="WARNING")
    engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("scheduled", 1)]
    registry = ScheduledJobRegistry("critical", connection=engine.connection)
    assert registry.get_job_ids() == [job_id]
    # exponential backoff, first retry: base 2 s with 10% jitter
    delay = registry.get_scheduled_time(job_id).timestamp() - before
    assert 0.7 <= delay <= 3.0  # RQ keeps whole seconds in the registry
    log = rows(database_url, "SELECT kind, attempt, delay, message FROM job_logs WHERE job_id=%s "
               "AND kind='retry'", job_id)
    assert len(log) == 1
    kind, attempt, logged_delay, message = log[0]
    assert (kind, attempt) == ("retry", 1)
    assert 1.8 <= logged_delay <= 2.2
    assert "TemporaryError" in message and "upstream timed out" in message
    assert Job.fetch(job_id, connection=engine.connection).get_status() == "scheduled"


def test_resource_error_backs_off_linearly(engine: Engine) -> None:
    job_id = engine.dispatch(jobs.busy_resource, priority="critical")
    before = time.time()
    engine.worker().work(burst=True, logging_level="WARNING")
    when = ScheduledJobRegistry("critical", connection=engine.connection).get_scheduled_time(job_id)
    assert abs(when.timestamp() - before - 30) < 2  # linear step 30 s, first attempt


def test_delays_grow_per_strategy_until_final_failure(fast_engine: Engine, database_url: str) -> None:
    temp = fast_engine.dispatch(jobs.flaky_temporary, priority="critical")
    res = fast_engine.dispatch(jobs.busy_resource, priority="critical")
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    for job_id in (temp, res):
        # five runs (max_attempts 5): four retries, then a final failure
        assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("failed", 5)]
        assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id=%s AND kind='retry'",
                      job_id) == 4
        # each run is timed from its own start (not from an earlier attempt's end)
        assert 0 <= scalar(database_url, "SELECT duration FROM jobs WHERE id=%s", job_id) < 5
    failed = rows(database_url, "SELECT job_id, error_class, error_message, traceback FROM failed_jobs "
                  "ORDER BY error_class")
    assert [(f[0], f[1], f[2]) for f in failed] == [
        (res, "jobengine.errors.ResourceError", "connection pool exhausted"),
        (temp, "jobengine.errors.TemporaryError", "upstream timed out"),
    ]
    assert all("Traceback (most recent call last)" in f[3] for f in failed)
    assert set(FailedJobRegistry("critical", connection=fast_engine.connection).get_job_ids()) == {temp, res}


def test_other_exceptions_are_not_retried(engine: Engine, database_url: str) -> None:
    job_id = engine.dispatch(jobs.broken, 3, priority="critical")
    engine.worker().work(burst=True, logging_level="WARNING")
    engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("failed", 1)]
    assert rows(database_url, "SELECT error_class, error_message FROM failed_jobs") == [
        ("ValueError", "bad value 3")]


def test_lanes_run_in_priority_order(fast_engine: Engine, database_url: str) -> None:
    order = ["low", "normal", "high", "critical", "low", "critical"]
    ids = [fast_engine.dispatch(jobs.noop, priority=p) for p in order]
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    started = [r[0] for r in rows(database_url, "SELECT job_id FROM job_logs WHERE kind='started' "
                                  "ORDER BY created_at")]
    rank = {"critical": 0, "high": 1, "normal": 2, "low": 3}
    expected = [job_id for _, job_id in sorted(zip([rank[p] for p in order], ids, strict=True),
                                               key=lambda pair: pair[0])]
    assert started == expected


def test_two_hundred_mixed_jobs_leave_matching_history(fast_engine: Engine, database_url: str) -> None:
    priorities = ["critical", "high", "normal", "low"]
    ids = fast_engine.dispatch_many(
        [JobSpec(jobs.mixed, (n,), type=f"mixed-{n % 3}", priority=priorities[n % 4]) for n in range(1, 201)])
    run_until_idle(fast_engine)
    assert fast_engine.flush_history() > 0
    by_id = dict(zip(ids, range(1, 201), strict=True))
    history = {r[0]: r[1:] for r in rows(database_url, "SELECT id, status, attempts, type, queue FROM jobs")}
    assert set(history) == set(ids)
    lanes = {"critical": "critical", "high": "high", "normal": "default", "low": "low"}
    for job_id, n in by_id.items():
        status, attempts, job_type, queue = history[job_id]
        assert job_type == f"mixed-{n % 3}" and queue == lanes[priorities[n % 4]]
        if n % 7 == 0:
            assert (status, attempts) == ("failed", 1), n
        elif n % 5 == 0:
            assert (status, attempts) == ("failed", 5), n
        else:
            assert (status, attempts) == ("finished", 1), n
            assert Job.fetch(job_id, connection=fast_engine.connection).return_value() == n * 2
    permanent = sum(1 for n in by_id.values() if n % 7 == 0)
    temporary = sum(1 for n in by_id.values() if n % 5 == 0 and n % 7)
    assert scalar(database_url, "SELECT count(*) FROM failed_jobs") == permanent + temporary
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE kind='retry'") == 4 * temporary
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE kind='started'") == \
        200 - permanent - temporary + permanent + 5 * temporary
    assert fast_engine.connection.xlen("jobengine:events") == 0  # everything reached PostgreSQL


def test_finished_result_respects_result_ttl(fast_engine: Engine) -> None:
    job_id = fast_engine.dispatch(jobs.add, 4, 5, priority="critical")
    run_until_idle(fast_engine)
    ttl = fast_engine.connection.ttl(f"rq:job:{job_id}")
    assert 0 < ttl <= fast_engine.settings.result_ttl
    assert Queue("critical", connection=fast_engine.connection).count == 0
