"""RQ compatibility of the default worker: RQ's API, registries and `rq info` read what it wrote;
plain RQ producers' jobs run on it; RQ's own worker runs what our engine dispatched."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.command import send_stop_execution_command, send_stop_job_command
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.worker import Worker

from jobengine import Engine, JobSpec
from jobengine.runtime.fastworker import FastWorker
from tests.engine import jobs
from tests.engine.helpers import rows, scalar

ROOT = Path(__file__).resolve().parents[2]
LANES = ("critical", "high", "default", "low")


# ---- job functions (importable as tests.engine.test_rq_compat.*) ---------------------------------

def note(name: str) -> str:
    """Append `name` to the Redis list `order` (which job ran when)."""
    job = get_current_job()
    assert job is not None
    job.connection.rpush("order", name)
    return name


def note_and_enqueue_critical(name: str) -> str:
    """Run order marker that also enqueues a critical job while the worker is busy."""
    job = get_current_job()
    assert job is not None
    Queue("critical", connection=job.connection).enqueue(note, "critical")
    return note(name)


def failing() -> None:
    raise ValueError("rq-side failure")


# ---- helpers ------------------------------------------------------------------------------------

def rq_info(redis_url: str) -> str:
    """`rq info --raw` on our Redis, as an operator would run it."""
    done = subprocess.run([sys.executable, "-m", "rq.cli", "info", "--url", redis_url, "--raw", *LANES],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def queue_counts(info: str, queue: str) -> tuple[int, int, int, int]:
    """(queued, executing, finished, failed) of `queue` in `rq info --raw` output."""
    match = re.search(rf"^queue {queue} (\d+), (\d+) executing, (\d+) finished, (\d+) failed$", info, re.M)
    assert match, info
    queued, executing, finished, failed = (int(g) for g in match.groups())
    return queued, executing, finished, failed


def burst(engine: Engine, queues: list[str] | None = None) -> FastWorker:
    worker = engine.worker(queues)
    assert isinstance(worker, FastWorker)  # the default worker is the one under test
    worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
    return worker


@contextmanager
def cli_worker(redis_url: str, database_url: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                             database_url, "worker", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def status(conn: redis.Redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=conn).get_status().value


# ---- what our worker writes, read by RQ ---------------------------------------------------------

def test_finished_job_reads_like_rq(fast_engine: Engine, redis_url: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.add, 2, 3, priority="high")
    worker = burst(fast_engine)
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == "finished" and job.worker_name == worker.name
    assert job.started_at is not None and job.ended_at is not None and job.ended_at >= job.started_at
    assert job.return_value() == 5
    result = job.latest_result()
    assert result is not None and result.type == Result.Type.SUCCESSFUL and result.worker_name == worker.name
    assert result.execution_id and len(result.execution_id) == 32
    assert FinishedJobRegistry("high", connection=conn).get_job_ids() == [job_id]
    assert StartedJobRegistry("high", connection=conn).get_job_ids() == []
    assert 0 < conn.ttl(job.key) <= fast_engine.settings.result_ttl
    assert 0 < conn.ttl(Result.get_key(job_id)) <= fast_engine.settings.result_ttl
    assert queue_counts(rq_info(redis_url), "high") == (0, 0, 1, 0)


def test_result_ttl_zero_and_forever_are_respected(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    queue = Queue("default", connection=conn)
    gone = queue.enqueue(jobs.add, 1, 1, result_ttl=0)
    kept = queue.enqueue(jobs.add, 2, 2, result_ttl=-1)
    burst(fast_engine)
    assert not conn.exists(gone.key) and not conn.exists(Result.get_key(gone.id))
    assert gone.id not in FinishedJobRegistry("default", connection=conn).get_job_ids()
    assert conn.ttl(kept.key) == -1 and conn.ttl(Result.get_key(kept.id)) == -1
    assert Job.fetch(kept.id, connection=conn).return_value() == 4
    assert conn.zscore(FinishedJobRegistry("default", connection=conn).key, kept.id) == float("inf")


def test_failed_job_reads_like_rq(fast_engine: Engine, redis_url: str, database_url: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.broken, 7, priority="critical")
    burst(fast_engine)
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == "failed"
    result = job.latest_result()
    assert result is not None and result.type == Result.Type.FAILED
    assert "ValueError: bad value 7" in (result.exc_string or "")
    assert FailedJobRegistry("critical", connection=conn).get_job_ids() == [job_id]
    assert StartedJobRegistry("critical", connection=conn).get_job_ids() == []
    assert queue_counts(rq_info(redis_url), "critical") == (0, 0, 0, 1)
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("failed", 1)]


def test_retried_job_reads_like_rq(engine: Engine, redis_url: str) -> None:
    conn = engine.connection
    job_id = engine.dispatch(jobs.flaky_temporary, priority="critical")  # exponential backoff: 2 s
    burst(engine)
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == "scheduled" and job.number_of_retries == 1
    assert ScheduledJobRegistry("critical", connection=conn).get_job_ids() == [job_id]
    assert FailedJobRegistry("critical", connection=conn).get_job_ids() == []
    assert queue_counts(rq_info(redis_url), "critical") == (0, 0, 0, 0)


def test_canceled_job_is_left_alone(fast_engine: Engine, redis_url: str) -> None:
    conn = fast_engine.connection
    canceled, kept = fast_engine.dispatch(jobs.add, 1, 2), fast_engine.dispatch(jobs.add, 3, 4)
    assert fast_engine.cancel(canceled) is True
    burst(fast_engine)
    assert status(conn, canceled) == "canceled" and status(conn, kept) == "finished"
    assert CanceledJobRegistry("default", connection=conn).get_job_ids() == [canceled]
    assert Job.fetch(canceled, connection=conn).latest_result() is None  # never ran
    assert queue_counts(rq_info(redis_url), "default") == (0, 0, 1, 0)


@pytest.mark.parametrize("how", ["stop-job", "stop-execution"])
def test_stopped_job_reads_like_rq(fast_engine: Engine, redis_url: str, database_url: str, how: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.sleepy, 30, priority="critical")
    with cli_worker(redis_url, database_url, "--queues", "critical") as proc:
        until(lambda: status(conn, job_id) == "started", "the job started")
        # the running job is visible the RQ 3 way: execution record, worker index, current job
        until(lambda: Job.fetch(job_id, connection=conn).get_executions(), "its execution record")
        execution = Job.fetch(job_id, connection=conn).get_executions()[0]
        (worker,) = Worker.all(connection=conn)
        assert worker.get_state() == "busy" and worker.get_current_job_id() == job_id
        assert StartedJobRegistry("critical", connection=conn).get_job_and_execution_ids() == \
            [(job_id, execution.id)]
        if how == "stop-job":
            send_stop_job_command(conn, job_id)
        else:
            send_stop_execution_command(conn, job_id, execution.id)
        until(lambda: status(conn, job_id) == "stopped", "the job stopped")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    job = Job.fetch(job_id, connection=conn)
    assert job_id in FailedJobRegistry("critical", connection=conn).get_job_ids()  # as RQ files stopped jobs
    assert StartedJobRegistry("critical", connection=conn).get_job_ids() == []
    assert job.get_executions() == [] and not conn.exists(execution.key)
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == "stopped"


def test_live_worker_registration_and_rq_info(fast_engine: Engine, redis_url: str, database_url: str) -> None:
    conn = fast_engine.connection
    with cli_worker(redis_url, database_url) as proc:
        until(lambda: conn.scard("rq:workers") == 1, "the worker registered")
        ids = fast_engine.dispatch_many([JobSpec(jobs.add, (i, i)) for i in range(5)] + [JobSpec(jobs.broken)])
        until(lambda: all(status(conn, j) in ("finished", "failed") for j in ids), "the jobs ran")
        (worker,) = Worker.all(connection=conn)
        until(lambda: Worker.all(connection=conn)[0].get_state() == "idle", "the worker went idle")
        key = worker.key
        assert 0 < conn.ttl(key) <= worker.worker_ttl + 60 and worker.last_heartbeat is not None
        assert worker.pid == proc.pid and worker.queue_names() == list(LANES)
        info = rq_info(redis_url)
        assert re.search(rf"^worker {worker.name} \(.* {proc.pid}\) idle critical, high, default, low\. "
                         r"jobs: 5 finished, 1 failed$", info, re.M), info
        assert queue_counts(info, "default") == (0, 0, 5, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert conn.scard("rq:workers") == 0 and conn.hget(key, "death") is not None


# ---- plain RQ clients and RQ's own worker ---------------------------------------------------------

def test_plain_rq_producer_jobs_run(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    queue = Queue("default", connection=conn)
    now_job = queue.enqueue(jobs.add, 20, 22)
    later = queue.enqueue_in(timedelta(seconds=1), jobs.add, 1, 1)
    parent = queue.enqueue(jobs.add, 5, 5)
    child = queue.enqueue(jobs.add, 6, 6, depends_on=parent)
    retried = queue.enqueue(failing, retry=Retry(max=2))
    assert status(conn, later.id) == "scheduled" and status(conn, child.id) == "deferred"

    def settled() -> bool:
        burst(fast_engine)
        return status(conn, later.id) == "finished" and status(conn, retried.id) == "failed"

    until(settled, "the scheduled job came due and the retries ran out")
    for job, value in ((now_job, 42), (later, 2), (parent, 10), (child, 12)):
        assert Job.fetch(job.id, connection=conn).return_value() == value
    failed = Job.fetch(retried.id, connection=conn)
    assert failed.retries_left == 0 and len(failed.results()) == 1  # RQ's Retry: 3 runs, one failure result
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id=%s AND kind='started'", retried.id) == 3
    assert scalar(database_url, "SELECT type FROM jobs WHERE id=%s", now_job.id) == "add"


def test_rq_simple_worker_runs_what_our_engine_dispatched(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    ids = fast_engine.dispatch_many([JobSpec(jobs.add, (i, 1), priority=p) for i, p in enumerate(
        ["low", "normal", "high", "critical"])])
    SimpleWorker(list(LANES), connection=conn).work(burst=True, logging_level="WARNING")
    assert [Job.fetch(j, connection=conn).return_value() for j in ids] == [1, 2, 3, 4]


def test_lanes_are_taken_in_priority_order(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    for lane, names in (("low", ["l1", "l2"]), ("default", ["d1", "d2"]), ("high", ["h1"]),
                        ("critical", ["c1", "c2"])):
        for name in names:
            Queue(lane, connection=conn).enqueue(note, name)
    burst(fast_engine)
    assert [x.decode() for x in conn.lrange("order", 0, -1)] == ["c1", "c2", "h1", "d1", "d2", "l1", "l2"]


def test_a_critical_job_overtakes_a_deep_lane(fast_engine: Engine) -> None:
    """Batches from a deep lane stay small enough that a critical job waits at most two: the rest
    of the batch in hand and the one already asked for (FastWorker.prefetch)."""
    conn = fast_engine.connection
    queue = Queue("low", connection=conn)
    queue.enqueue_many([Queue.prepare_data(note, (f"l{i}",)) for i in range(60)])
    queue.enqueue(note_and_enqueue_critical, "trigger")
    queue.enqueue_many([Queue.prepare_data(note, (f"m{i}",)) for i in range(200)])
    burst(fast_engine)
    order = [x.decode() for x in conn.lrange("order", 0, -1)]
    assert len(order) == 262 and len(set(order)) == 262  # each job ran exactly once
    assert 0 < order.index("critical") - order.index("trigger") <= 2 * FastWorker.max_batch


def test_sigkilled_workers_job_is_found_abandoned_by_rq(fast_engine: Engine, redis_url: str,
                                                        database_url: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.sleepy, 60, priority="critical")
    with cli_worker(redis_url, database_url) as proc:
        until(lambda: status(conn, job_id) == "started", "the job started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    registry = StartedJobRegistry("critical", connection=conn)
    ((entry, score),) = conn.zrange(registry.key, 0, -1, withscores=True)
    assert entry.decode().startswith(f"{job_id}:")
    assert score <= time.time() + fast_engine.settings.job_timeout + 60  # as RQ's SimpleWorker scores it
    sweeper = fast_engine.worker()  # RQ's own sweep, as any live worker's maintenance runs it, once expired
    registry.cleanup(timestamp=score + 1, exception_handlers=sweeper._exc_handlers)
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == "failed"
    assert FailedJobRegistry("critical", connection=conn).get_job_ids() == [job_id]
    assert registry.get_job_ids() == []
    result = job.latest_result()
    assert result is not None and "AbandonedJobError" in (result.exc_string or "")
    fast_engine.flush_history()  # the history no longer shows it processing: it failed, abandoned
    assert rows(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == [("failed",)]
    assert [f.job_id for f in fast_engine.failed_jobs()] == [job_id]
    assert fast_engine.failed_jobs()[0].error_class == "rq.exceptions.AbandonedJobError"
    assert fast_engine.stuck_jobs() == []


def test_rqs_own_cli_runs_our_worker_class(fast_engine: Engine, redis_url: str) -> None:
    """`rq worker -w jobengine.runtime.fastworker.FastWorker`: RQ's CLI builds and runs it."""
    conn = fast_engine.connection
    job = Queue("default", connection=conn).enqueue(jobs.add, 40, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url, "-w",
                           "jobengine.runtime.fastworker.FastWorker", "default"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Job.fetch(job.id, connection=conn).return_value() == 42
    (_, fields), = conn.xrange("jobengine:events")  # waiting for a history writer: the run's end, its start folded in
    assert fields[b"k"] == b"finished" and float(fields[b"started"]) <= float(fields[b"t"])


def test_classic_and_forking_workers_stay_reachable(fast_engine: Engine) -> None:
    from jobengine.runtime.worker import ForkingJobWorker, JobWorker

    conn = fast_engine.connection
    for kind, cls in (({"classic": True}, JobWorker), ({"fork": True}, ForkingJobWorker)):
        job_id = fast_engine.dispatch(jobs.add, 1, 1)
        worker = fast_engine.worker(**kind)
        assert type(worker) is cls
        worker.work(burst=True, logging_level="WARNING")
        assert Job.fetch(job_id, connection=conn).return_value() == 2


@pytest.mark.parametrize("priority", ["normal", "high"])  # queued now, or scheduled (high: 5 s delay)
def test_dispatched_job_hash_is_what_rq_writes(engine: Engine, priority: str) -> None:
    """dispatch_many builds the hashes itself: they match what RQ's own enqueue/schedule writes."""
    conn = engine.connection
    ours = engine.dispatch(jobs.add, 1, "x", type="adder", priority=priority, extra=[1, 2])
    lane = engine.settings.lane(priority)
    queue = Queue(lane.queue, connection=conn)
    theirs = queue.create_job("tests.engine.jobs.add", args=(1, "x"), kwargs={"extra": [1, 2]},
                              timeout=engine.settings.job_timeout, result_ttl=engine.settings.result_ttl,
                              failure_ttl=engine.settings.failure_ttl,
                              meta={"type": "adder", "priority": lane.priority.value})
    with conn.pipeline() as pipe:
        if lane.delay:
            queue.schedule_job(theirs, datetime.now(UTC) + timedelta(seconds=lane.delay), pipeline=pipe)
        else:
            queue.enqueue_job(theirs, pipeline=pipe)
        pipe.execute()

    def fields(job_id: str) -> dict[bytes, bytes]:
        stamps = (b"created_at", b"enqueued_at")
        return {k: v for k, v in conn.hgetall(f"rq:job:{job_id}").items() if v and k not in stamps}

    assert fields(ours) == fields(theirs.id)
    assert bool(conn.hget(f"rq:job:{ours}", "enqueued_at")) == bool(conn.hget(theirs.key, "enqueued_at"))
    if lane.delay:
        registry = ScheduledJobRegistry(lane.queue, connection=conn)
        assert registry.get_job_ids() == [ours, theirs.id] or registry.get_job_ids() == [theirs.id, ours]
        assert abs(registry.get_scheduled_time(ours).timestamp() - registry.get_scheduled_time(theirs.id)
                   .timestamp()) <= 1
    else:
        assert queue.job_ids == [ours, theirs.id]
    fetched = Job.fetch(ours, connection=conn)
    assert (fetched.func_name, fetched.args, fetched.kwargs) == ("tests.engine.jobs.add", (1, "x"), {"extra": [1, 2]})
    assert conn.sismember("rq:queues", queue.key)
