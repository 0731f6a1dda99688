"""The record builders both worker families use: what a retry, a defer, a failure and an
abandoned job record (pure: no Redis is written)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import redis
from rq import Retry
from rq.job import Job, JobStatus

from jobengine import Engine
from jobengine.config import Settings
from jobengine.errors import TemporaryError
from jobengine.history.events import event_fields
from jobengine.retry import RetryDecision, RetryPolicy
from jobengine.runtime import records
from jobengine.runtime.jobinfo import JobStopped, attempt_of, error_details, job_type
from jobengine.types import EventKind
from tests.engine import jobs


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - a traceback to format
        return caught


@pytest.fixture
def job(redis_conn: redis.Redis) -> Job:
    return Job.create(jobs.broken, connection=redis_conn, origin="default", meta={"type": "report"})


def test_job_info(redis_conn: redis.Redis, job: Job) -> None:
    assert job_type(job) == "report"
    assert job_type(Job.create(jobs.broken, connection=redis_conn)) == "broken"  # plain RQ job: the function
    assert attempt_of(job) == 1
    job.number_of_retries = 2
    assert attempt_of(job) == 3


def test_error_details_name_the_class_as_failure_records_do() -> None:
    details = error_details(_raised(TemporaryError("upstream down")))
    assert details["error_class"] == "jobengine.errors.TemporaryError"
    assert details["error_message"] == "upstream down"
    assert details["traceback"].startswith("Traceback") and "TemporaryError: upstream down" in details["traceback"]
    assert error_details(_raised(ValueError("x")))["error_class"] == "ValueError"  # no 'builtins.'
    rq_text = "Traceback...\nValueError: gone\n"
    assert error_details(None, rq_text) == {"error_class": "Error", "error_message": "ValueError: gone",
                                            "traceback": rq_text}
    assert error_details(None)["error_class"] == "AbandonedJobError"


def test_a_retry_by_our_policy(job: Job) -> None:
    job.number_of_retries = 1
    exc = _raised(TemporaryError("upstream down"))
    decision = records.decide(RetryPolicy.from_settings(Settings()), exc, attempt_of(job), stopped=False)
    assert decision.retry
    entry = records.failure(job, exc, decision, worker="w1", duration=0.25, started="12.5")
    assert entry.kind is EventKind.RETRY and entry.status is None
    fields = entry.fields
    assert fields["type"] == "report" and fields["attempt"] == 2 and fields["worker"] == "w1"
    assert fields["duration"] == "0.250000" and fields["started"] == "12.5"
    assert fields["delay"] == f"{decision.delay:.3f}"
    assert fields["message"] == (f"retry 3 in {decision.delay:.1f}s ({decision.strategy}) after "
                                 "TemporaryError: upstream down")
    assert fields["error_class"] == "jobengine.errors.TemporaryError"
    fmt, *args = entry.log
    assert fmt % tuple(args) == (f"job {job.id} (report) failed attempt 2 with TemporaryError; retrying in "
                                 f"{decision.delay:.1f}s ({decision.strategy})")
    event_fields(entry.kind, job.id, "default", **fields)  # every field is one the event format knows


def test_a_final_failure_a_stop_and_an_rq_retry(redis_conn: redis.Redis, job: Job) -> None:
    exc = _raised(ValueError("bad value 3"))
    failed = records.failure(job, exc, RetryDecision.give_up("none", "no rule"), worker="w1", duration=1.0)
    assert failed.kind is EventKind.FAILED and failed.status is JobStatus.FAILED and not failed.log
    assert failed.fields["error_class"] == "ValueError" and "delay" not in failed.fields
    assert "started" not in failed.fields  # not folded in: the run's own `started` event was sent

    policy = RetryPolicy.from_settings(Settings())
    stopped_exc = _raised(JobStopped("stop"))
    decision = records.decide(policy, stopped_exc, 1, stopped=True)
    assert decision is records.NO_RETRY
    stopped = records.failure(job, stopped_exc, decision, worker="w1", duration=1.0, stopped=True)
    assert stopped.kind is EventKind.STOPPED and stopped.status is JobStatus.STOPPED
    assert stopped.fields["message"] == "stopped on request" and "error_class" not in stopped.fields
    assert records.decide(policy, None, 1, stopped=False) is records.NO_RETRY  # a horse that died: no exception

    own = Job.create(jobs.broken, connection=redis_conn, origin="default", retry=Retry(max=2, interval=[7, 9]))
    entry = records.failure(own, exc, RetryDecision.give_up("none", "no rule"), worker="w1", duration=1.0)
    assert entry.kind is EventKind.RETRY and entry.status is None and entry.fields["delay"] == 7
    assert entry.fields["error_class"] == "ValueError" and "message" not in entry.fields


def test_a_deferral(job: Job) -> None:
    now = 1_700_000_000.2
    first = records.deferral(job, 2.5, "is at its rate limit (5/min)", worker="w1", now=now)
    assert first.deferrals == 1 and first.entry.kind is EventKind.DEFERRED
    assert first.when == datetime.fromtimestamp(1_700_000_003, UTC)  # rounded up to whole seconds
    assert first.entry.fields == {"type": "report", "delay": "2.500", "worker": "w1",
                                  "message": "deferred 2.5s: queue default is at its rate limit (5/min)"}
    fmt, *args = first.entry.log
    assert fmt % tuple(args) == f"job {job.id} (report) deferred 2.5s: queue default is at its rate limit (5/min)"
    job.meta["deferrals"] = first.deferrals
    again = records.deferral(job, 2.5, "is at its rate limit (5/min)", worker="w1", now=now)
    assert again.deferrals == 2 and again.entry.log == ()  # logged once per job
    assert "deferrals" in job.meta and job.meta["deferrals"] == 1  # the builder changes nothing


def test_an_abandoned_job(job: Job) -> None:
    job.worker_name = "w-dead"
    entry = records.abandoned(job, "w-sweeper")
    assert entry.kind is EventKind.FAILED and entry.status is JobStatus.FAILED
    assert entry.fields["error_class"] == "rq.exceptions.AbandonedJobError"
    assert entry.fields["error_message"] == "the worker running it (w-dead) died; found abandoned by w-sweeper"
    assert entry.fields["worker"] == "w-dead" and entry.fields["attempt"] == 1


def test_the_classic_and_fast_worker_log_the_same_retry(fast_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Both families log (and record) a policy retry in the builder's words."""
    messages = []
    for classic in (False, True):
        job_id = fast_engine.dispatch(jobs.flaky_temporary)
        with caplog.at_level(logging.INFO, logger="jobengine.worker"):
            fast_engine.worker(classic=classic).work(burst=True, max_jobs=1, logging_level="WARNING")
        logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"job {job_id} ")]
        messages.append(logged[0].replace(job_id, "ID"))
        caplog.clear()
    assert messages == ["job ID (flaky_temporary) failed attempt 1 with TemporaryError; retrying in 0.0s "
                        "(exponential)"] * 2
