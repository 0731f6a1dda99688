"""Worker death, in one process: a worker takes a batch and "dies" (its alive key is deleted, the
object dropped); recovery puts its jobs back. Real Redis and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from rq import get_current_job
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from jobengine import Engine, JobSpec, keys
from jobengine.config import Settings
from jobengine.health import verdict
from jobengine.models import WorkerLiveness
from jobengine.monitor import read_liveness
from jobengine.retry import RetryPolicy
from jobengine.runtime.fastworker import FastWorker
from jobengine.runtime.outcomes import Held
from jobengine.runtime.recovery import ABANDONED, SUSPECT, Recovery, recover
from jobengine.runtime.transport import Fenced
from tests.engine import jobs
from tests.engine.helpers import rows


def running_mark() -> str:
    """Note the `running` mark of this job's worker while the job runs."""
    job = get_current_job()
    assert job is not None
    mark = job.connection.hget(keys.worker_held_key(job.worker_name or ""), "running") or b""
    job.connection.rpush("marks", mark)
    return mark.decode()


def taken(engine: Engine, n: int) -> tuple[FastWorker, list[Held]]:
    """A fast worker that took a batch of `n` (held in Redis, none run)."""
    worker = engine.worker()
    assert isinstance(worker, FastWorker)
    worker._setup(False)
    worker.register_birth()
    batch = worker._fetch(n)
    assert batch is not None and len(batch) == n
    return worker, batch


def die(worker: FastWorker) -> None:
    """What SIGKILL leaves: everything the worker wrote, and an alive key that has expired."""
    worker.connection.delete(keys.worker_alive_key(worker.name))


def queue(conn: redis.Redis, name: str = "default") -> list[str]:
    return [j.decode() for j in conn.lrange(f"rq:queue:{name}", 0, -1)]


def logs(database_url: str, job_id: str) -> list[tuple[str, str]]:
    return [(k, m) for k, m in rows(database_url, "SELECT kind, message FROM job_logs WHERE job_id = %s "
                                    "ORDER BY created_at, id", job_id)]


def test_a_dead_workers_jobs_go_back_to_the_front_in_order(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    ids = fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(6)])
    worker, batch = taken(fast_engine, 4)
    worker._running = batch[2]  # the first two ran (their completions were still pending), the third runs
    worker._mark(batch[2])
    worker._flush()
    die(worker)
    report = recover(conn, fast_engine.settings, who="test")
    assert (report.workers, report.requeued, report.lost, report.retried, report.failed) == ([worker.name], 3, 2, 1, 0)
    assert queue(conn) == ids  # all back at the front, in the order they were taken
    for job_id in ids:
        job = Job.fetch(job_id, connection=conn)
        assert job.get_status() == "queued" and job.worker_name is None
    ran = Job.fetch(ids[2], connection=conn)
    assert ran.number_of_retries == 1 and ran.meta[ABANDONED] == 1  # the running one: an abandonment
    assert all(not Job.fetch(j, connection=conn).number_of_retries for j in ids[:2] + ids[3:])  # attempts unchanged
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    assert not conn.exists(keys.worker_held_key(worker.name), keys.rq_worker_key(worker.name))
    assert conn.smembers(keys.WORKERS) == set() and conn.smembers(keys.RQ_WORKERS) == set()
    fast_engine.flush_history()
    assert "ran on worker" in logs(database_url, ids[0])[-1][1] and "at-least-once" in logs(database_url, ids[0])[-1][1]
    assert "died while running it (1 time so far)" in logs(database_url, ids[2])[-1][1]
    assert "before running it (not an attempt)" in logs(database_url, ids[3])[-1][1]
    assert rows(database_url, "SELECT DISTINCT status FROM jobs") == [("queued",)]
    fast_engine.worker().work(burst=True, logging_level="WARNING")
    assert [Job.fetch(j, connection=conn).get_status() for j in ids] == ["finished"] * 6


def test_without_a_mark_held_jobs_are_suspects_marked_before_they_run_again(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    ids = fast_engine.dispatch_many([JobSpec(running_mark) for _ in range(3)])
    worker, _ = taken(fast_engine, 3)  # killed within `hold` of starting: no mark
    die(worker)
    report = recover(conn, fast_engine.settings, who="test")
    assert (report.requeued, report.lost, report.retried) == (3, 0, 0)
    assert all(Job.fetch(j, connection=conn).meta.get(SUSPECT) for j in ids)
    assert all(not Job.fetch(j, connection=conn).meta.get(ABANDONED) for j in ids)  # no strike: unknown
    fast_engine.worker().work(burst=True, logging_level="WARNING")
    marks = [m.decode() for m in conn.lrange("marks", 0, -1)]
    assert [m.partition(":")[0] for m in marks] == ids  # each suspect was marked running before it ran


def test_the_third_abandonment_is_a_final_failure(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.noop)
    job = Job.fetch(job_id, connection=conn)
    job.meta[ABANDONED] = 2
    job.save_meta()
    worker, batch = taken(fast_engine, 1)
    worker._running = batch[0]
    worker._mark(batch[0])
    worker._flush()
    die(worker)
    report = recover(conn, fast_engine.settings, who="test")
    assert (report.retried, report.failed) == (0, 1)
    assert Job.fetch(job_id, connection=conn).get_status() == "failed"
    assert FailedJobRegistry("default", connection=conn).get_job_ids() == [job_id]
    fast_engine.flush_history()
    (status, message), = rows(database_url, "SELECT j.status, f.error_message FROM jobs j JOIN failed_jobs f "
                              "ON f.job_id = j.id WHERE j.id = %s", job_id)
    assert status == "failed" and message.startswith("killed its worker 3 times")


def test_abandoned_strategy_comes_from_retry_abandoned(redis_url: str, database_url: str) -> None:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                             retry_params={"abandoned": {"delay": 30, "max_attempts": 5}})
    policy = RetryPolicy.from_settings(settings)
    assert [policy.abandoned(n).retry for n in (1, 4, 5)] == [True, True, False]
    assert policy.abandoned(1).delay == 30
    assert RetryPolicy().abandoned(3).retry is False  # default: the third abandonment fails


def test_a_late_block_of_a_recovered_worker_is_refused(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    ids = fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(2)])
    worker, batch = taken(fast_engine, 2)
    job = batch[0].job
    job.started_at = job.ended_at = datetime.now(UTC)
    with worker._lock:
        worker._succeeded(batch[0], None)  # finished, its completion pending: then the link is cut
    die(worker)
    assert recover(conn, fast_engine.settings, who="other-host").requeued == 2
    with pytest.raises(Fenced):
        worker._flush()  # the block reaches Redis after the recovery: refused whole
    assert Job.fetch(ids[0], connection=conn).get_status() == "queued"  # no second finish
    assert not any(f[b"k"] == b"finished" for _, f in conn.xrange(keys.EVENTS_STREAM))
    with pytest.raises(Fenced):
        worker._flush()  # nothing leaves until it rejoins
    worker._rejoin()
    assert conn.get(keys.worker_fence_key(worker.name)).decode() == worker._fence_token
    assert conn.exists(keys.worker_alive_key(worker.name), keys.rq_worker_key(worker.name)) == 2
    again = worker._fetch(2)  # a new life: it takes (and may run) the recovered jobs
    assert again is not None and [h.job.id for h in again] == ids


def test_a_new_connection_of_a_recovered_worker_is_refused(fast_engine: Engine) -> None:
    fast_engine.dispatch(jobs.noop)
    worker, _ = taken(fast_engine, 1)
    die(worker)
    recover(fast_engine.connection, fast_engine.settings, who="test")
    worker._blocks.connection_pool.disconnect()  # the cut-off host reconnects
    with pytest.raises(Fenced):
        worker._fetch(1)


def test_rq_cleanup_of_an_abandoned_job_is_recorded_once(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.noop)
    worker, batch = taken(fast_engine, 1)
    conn.delete(keys.worker_held_key(worker.name))  # a worker recovery does not know (a classic one)
    conn.srem(keys.WORKERS, worker.name)
    registry = StartedJobRegistry("default", connection=conn)
    conn.zadd(registry.key, {batch[0].member: datetime.now(UTC).timestamp() + 2})  # about to expire
    recovery = Recovery(conn, fast_engine.settings, RetryPolicy(), who="watcher")
    assert recovery.run().swept == 0
    conn.zadd(registry.key, {batch[0].member: 1})  # expired, then `rq info` sweeps (no exception handlers)
    registry.cleanup()
    assert Job.fetch(job_id, connection=conn).get_status() == "failed"
    assert recovery.run().swept == 1
    assert recovery.run().swept == 0
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status FROM jobs WHERE id = %s", job_id) == [("failed",)]
    assert rows(database_url, "SELECT count(*) FROM failed_jobs WHERE job_id = %s", job_id) == [(1,)]


@pytest.mark.parametrize("rewritten", [(), ("state", "busy"), ("last_heartbeat", "x")],
                         ids=["hash-gone", "state-written-first", "heartbeat-written-first"])
def test_a_worker_registers_again_when_its_registration_vanished(fast_engine: Engine,
                                                                 rewritten: tuple[str, ...]) -> None:
    conn = fast_engine.connection
    worker = fast_engine.worker()
    assert isinstance(worker, FastWorker)
    worker._setup(False)
    worker.register_birth()
    conn.delete(worker.key)
    conn.srem(keys.RQ_WORKERS, worker.key)
    if rewritten:  # a block sent after the reset wrote a field of the worker hash before the beat
        conn.hset(worker.key, *rewritten)
    assert read_liveness(conn).unregistered == (worker.name,)
    worker._beat()
    assert conn.sismember(keys.RQ_WORKERS, worker.key)
    assert conn.hget(worker.key, "queues") == b"critical,high,default,low"
    assert read_liveness(conn) == WorkerLiveness()


def test_liveness_reads_dead_workers_until_recovered(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    fast_engine.dispatch(jobs.noop)
    worker, _ = taken(fast_engine, 1)
    die(worker)
    (name, beat), = read_liveness(conn).dead
    assert name == worker.name and beat is not None and beat < 5
    assert fast_engine.health().verdict == "warning"
    assert any("Recovery in progress" in r for r in fast_engine.health().reasons)
    recover(conn, fast_engine.settings)
    assert read_liveness(conn) == WorkerLiveness()


@pytest.mark.parametrize(("dead", "expected"), [
    ((("w1", 10.0),), "warning"), ((("w1", 500.0),), "failing"), ((("w1", None),), "failing")])
def test_verdict_on_dead_workers(dead: Any, expected: str) -> None:
    settings = Settings()
    report = verdict(settings, datetime.now(UTC), queues=[], workers=[], stale=[], stuck=[], failures_hour=0,
                     outages=[], liveness=WorkerLiveness(dead=dead))
    assert report.verdict == expected and "w1" in report.reasons[0]
    unregistered = verdict(settings, datetime.now(UTC), queues=[], workers=[], stale=[], stuck=[], failures_hour=0,
                           outages=[], liveness=WorkerLiveness(unregistered=("w2",)))
    assert unregistered.verdict == "warning" and "registers again" in unregistered.reasons[0]


def test_default_recovery_window_is_within_a_minute() -> None:
    from jobengine.runtime.recovery import check_every, heartbeat_every

    settings = Settings()  # the alive key expires, a lock left by a killed recoverer expires, one check
    assert settings.recovery_after + 2 * check_every(settings.recovery_after) <= 60
    assert heartbeat_every(settings.recovery_after) * 3 <= settings.recovery_after


def test_recovery_entries_say_what_happened() -> None:
    from jobengine.retry import RetryDecision
    from jobengine.runtime import records

    job = Job.create(jobs.noop, connection=redis.Redis(), meta={"type": "noop"})
    lost = records.recovered(job, "w1", records.LOST, "w2")
    assert lost.kind == "requeued" and lost.status is None and "at-least-once" in lost.fields["message"]
    retried = records.abandoned_run(job, "w1", RetryDecision.after(0, "abandoned"), 1, "w2")
    assert retried.kind == "requeued" and "1 time so far" in retried.fields["message"]
    later = records.abandoned_run(job, "w1", RetryDecision.after(5, "abandoned"), 2, "w2")
    assert later.kind == "retry" and later.fields["delay"] == "5.000"
    final = records.abandoned_run(job, "w1", RetryDecision.give_up("abandoned", "3 of 3 attempts used"), 3, "w2")
    assert final.kind == "failed" and final.status == "failed"
    assert final.fields["error_message"].startswith("killed its worker 3 times (last: w1")


_DIES_HOLDING_THE_LOCK = """
import os, sys, redis
from jobengine.config import Settings
from jobengine.retry import RetryPolicy
from jobengine.runtime.recovery import Recovery

class DiesHoldingTheLock(Recovery):
    def dead_workers(self):
        os._exit(9)  # as SIGKILL, right after taking the lock: it is never released

settings = Settings.load(env={}, redis_url=sys.argv[1], recovery_after=10)
DiesHoldingTheLock(redis.Redis.from_url(sys.argv[1]), settings, RetryPolicy.from_settings(settings),
                   who="doomed").run()
"""


def test_a_recoverer_killed_holding_the_lock_delays_recovery_by_one_check_at_most(
        fast_engine: Engine, redis_url: str) -> None:
    """The recovery lock of a process that died holding it expires within one check period
    (check_every: 2 s for a 10 s window), not after a fixed 30 s: it once held up every recovery
    of an e2e run with three SIGKILLs for 29-31 s."""
    import subprocess
    import sys
    import time

    from jobengine.runtime.recovery import check_every

    conn = fast_engine.connection
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(3)])
    worker, _ = taken(fast_engine, 3)
    die(worker)
    doomed = subprocess.run([sys.executable, "-c", _DIES_HOLDING_THE_LOCK, redis_url], capture_output=True)
    assert doomed.returncode == 9 and conn.exists(keys.RECOVERY_LOCK)  # it died holding the lock
    settings = Settings.load(env={}, redis_url=redis_url, recovery_after=10)
    every = check_every(settings.recovery_after)
    assert 0 < conn.pttl(keys.RECOVERY_LOCK) <= every * 1000
    survivor = Recovery(conn, settings, RetryPolicy.from_settings(settings), who="survivor")
    assert not survivor.run().locked  # held: nothing done yet
    time.sleep(every + 0.1)
    report = survivor.run()
    assert report.locked and report.workers == [worker.name] and report.requeued == 3
