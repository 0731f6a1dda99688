"""Operator actions: retry and cancel are idempotent, update history and are audited."""

from __future__ import annotations

import getpass
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue
from rq.job import Job

from jobengine import Engine
from jobengine.config import Settings
from jobengine.errors import JobNotFound, OperationRefused
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle, scalar


def test_retry_puts_a_failed_job_back_once(fast_engine: Engine, database_url: str) -> None:
    job_id = fast_engine.dispatch(jobs.broken, priority="high")
    run_until_idle(fast_engine)
    assert fast_engine.retry(job_id) is True
    assert fast_engine.retry(job_id) is False  # already back on its lane
    assert Queue("high", connection=fast_engine.connection).job_ids == [job_id]
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "queued"
    audit = rows(database_url, "SELECT action, job_id, os_user, host FROM audit_log")
    assert audit == [("retry", job_id, getpass.getuser(), socket.gethostname())]
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("failed", 2)]


def test_cancel_a_scheduled_job(engine: Engine, database_url: str) -> None:
    job_id = engine.dispatch(jobs.noop, priority="low")  # 5 min dispatch delay
    assert engine.cancel(job_id) is True
    assert engine.cancel(job_id) is False
    assert Job.fetch(job_id, connection=engine.connection).get_status() == "canceled"
    assert engine.connection.zcard("rq:scheduled:low") == 0
    engine.flush_history()
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "canceled"
    assert rows(database_url, "SELECT action FROM audit_log") == [("cancel",)]
    # a canceled job can be put back on its lane
    assert engine.retry(job_id) is True
    assert Queue("low", connection=engine.connection).job_ids == [job_id]


def test_cancel_a_queued_job(fast_engine: Engine) -> None:
    job_id = fast_engine.dispatch(jobs.noop, priority="normal")
    assert fast_engine.cancel(job_id) is True
    assert Queue("default", connection=fast_engine.connection).count == 0
    run_until_idle(fast_engine)
    assert Job.fetch(job_id, connection=fast_engine.connection).get_status() == "canceled"


@pytest.mark.parametrize("mode", ["--fork", "--burst"])  # forked work horse, or in-process job
def test_cancel_stops_a_running_job(fast_engine: Engine, database_url: str, redis_url: str, mode: str) -> None:
    job_id = fast_engine.dispatch(jobs.sleepy, 30, priority="critical")
    env_cmd = [sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
               database_url, "worker", mode, "--burst", "--queues", "critical"]
    proc = subprocess.Popen(env_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while Job.fetch(job_id, connection=fast_engine.connection).get_status() != "started":
            assert time.time() < deadline, "job never started"
            time.sleep(0.1)
        assert fast_engine.cancel(job_id) is True
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert Job.fetch(job_id, connection=fast_engine.connection).get_status() == "stopped"
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "stopped"
    assert fast_engine.retry(job_id) is True  # a stopped job can be retried


def test_unknown_job(engine: Engine) -> None:
    with pytest.raises(JobNotFound, match="not in Redis"):
        engine.retry("does-not-exist")


def test_read_only_refuses_actions(redis_url: str, database_url: str) -> None:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, read_only=True)
    with Engine(settings) as engine:
        with pytest.raises(OperationRefused, match="read-only"):
            engine.retry("x")
        with pytest.raises(OperationRefused, match="read-only"):
            engine.cancel("x")


def test_sigterm_finishes_the_current_job(fast_engine: Engine, database_url: str, redis_url: str) -> None:
    import signal

    job_id = fast_engine.dispatch(jobs.sleepy, 1.5, priority="critical")
    waiting = fast_engine.dispatch(jobs.noop, priority="low")
    proc = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                             database_url, "worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while Job.fetch(job_id, connection=fast_engine.connection).get_status() != "started":
            assert time.time() < deadline, "job never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert Job.fetch(job_id, connection=fast_engine.connection).get_status() == "finished"
    assert Job.fetch(waiting, connection=fast_engine.connection).get_status() == "queued"  # not started
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "finished"


# ---- retried failures leave the failed list ------------------------------------------------------

def _listed(engine: Engine) -> tuple[list[str], int, int, int, dict[str, int]]:
    """What a console shows: failed ids, the O(1) total, the exact total, the failures of the last
    hour (health), group sizes."""
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    return ([f.job_id for f in engine.failed_jobs()], engine.store.failed_total(),
            engine.store.failed_total(search="bad"), engine.store.failures_since(hour_ago),
            {g.fingerprint: g.count for g in engine.failure_groups()})


def test_a_retried_failure_leaves_the_failed_list_and_a_new_one_shows(fast_engine: Engine,
                                                                       database_url: str) -> None:
    ids = [fast_engine.dispatch(jobs.broken, n, priority="high") for n in (1, 2, 3)]
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    before = _listed(fast_engine)
    assert sorted(before[0]) == sorted(ids) and before[1:4] == (3, 3, 3) and list(before[4].values()) == [3]
    assert fast_engine.retry(ids[0]) is True  # at once, before any history writer drains the event
    listed = _listed(fast_engine)
    assert sorted(listed[0]) == sorted(ids[1:]) and listed[1:4] == (2, 2, 2) and list(listed[4].values()) == [2]
    assert fast_engine.retry_group(next(iter(listed[4]))) == 2  # R on the group: both left
    assert _listed(fast_engine) == ([], 0, 0, 0, {})
    assert scalar(database_url, "SELECT count(*) FROM failed_jobs") == 3  # still history
    assert rows(database_url, "SELECT action, count(*) FROM audit_log GROUP BY action ORDER BY action") == [
        ("retry", 3), ("retry_group", 1)]  # a row per job and one for the group
    detail = fast_engine.job_detail(ids[0])  # the job's detail still shows its failure, as retried
    assert detail.failure is not None and detail.failure.retried_at is not None
    fast_engine.flush_history()  # the `requeued` events change nothing more
    assert _listed(fast_engine) == ([], 0, 0, 0, {})
    run_until_idle(fast_engine)  # all three fail again: three new open failures
    fast_engine.flush_history()
    again = _listed(fast_engine)
    assert sorted(again[0]) == sorted(ids) and again[1:4] == (3, 3, 3)
    assert scalar(database_url, "SELECT count(*) FROM failed_jobs") == 6
    detail = fast_engine.job_detail(ids[0])
    assert detail.failure is not None and detail.failure.retried_at is None  # the new failure


def test_a_retry_made_while_postgres_was_down_resolves_when_the_event_lands(fast_engine: Engine,
                                                                           database_url: str) -> None:
    from tests.engine.test_history_outage import _block_connections

    job_id = fast_engine.dispatch(jobs.broken, priority="high")
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    assert _listed(fast_engine)[0] == [job_id]
    fast_engine.store.close()
    _block_connections(database_url, allow=False)
    try:
        assert fast_engine.retry(job_id) is True  # the audit row and the resolve wait; the retry does not
    finally:
        _block_connections(database_url, allow=True)
    assert _listed(fast_engine)[0] == [job_id]  # PostgreSQL has not heard of the retry yet
    fast_engine.flush_history()  # the `requeued` event arrives
    assert _listed(fast_engine) == ([], 0, 0, 0, {})
    assert scalar(database_url, "SELECT count(*) FROM failed_jobs WHERE retried_at IS NOT NULL") == 1


def test_retry_group_skips_jobs_gone_from_redis(fast_engine: Engine, database_url: str) -> None:
    ids = [fast_engine.dispatch(jobs.broken, n, priority="high") for n in (1, 2)]
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    fast_engine.connection.delete(f"rq:job:{ids[0]}")  # its failure_ttl expired
    [group] = fast_engine.failure_groups()
    assert fast_engine.retry_group(group.fingerprint) == 1
    assert [f.job_id for f in fast_engine.failed_jobs()] == [ids[0]]  # nothing put it back: still failed
    assert rows(database_url, "SELECT job_id FROM audit_log WHERE action = 'retry'") == [(ids[1],)]
