"""What runs now: workers' current jobs and idle times, the long-running warning while a job runs."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Worker
from rq.utils import utcformat

from jobengine import Engine
from jobengine.config import Settings
from jobengine.keys import rq_job_key, rq_started_key
from jobengine.models import WorkerInfo
from jobengine.running import ACTIVITY, LongRunningWatch, job_type_of, read_workers, warned_key
from tests.engine import jobs
from tests.engine.helpers import rows


@pytest.fixture
def slow_engine(redis_url: str, database_url: str) -> Iterator[Engine]:
    """Jobs count as long-running after 0.5 s."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, long_running=0.5)
    with Engine(settings) as engine:
        yield engine


def _observe(engine: Engine, until: threading.Event, seen: list[tuple[float, list[WorkerInfo], int]]) -> None:
    while not until.wait(0.05):
        snap = engine.monitor.snapshot(shared=False)
        seen.append((time.time(), list(snap.workers), len(snap.long_running)))


@pytest.mark.parametrize("classic", [False, True], ids=["fast", "classic"])
def test_a_busy_worker_names_its_job_and_an_idle_one_says_since_when(
        slow_engine: Engine, database_url: str, classic: bool, caplog: pytest.LogCaptureFixture) -> None:
    job_id = slow_engine.dispatch(jobs.sleepy, 1.5, type="slow-report", priority="critical")
    seen: list[tuple[float, list[WorkerInfo], int]] = []
    stop = threading.Event()
    observer = threading.Thread(target=_observe, args=(slow_engine, stop, seen))
    worker = slow_engine.worker(classic=classic)
    observer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="jobengine.monitor"):
            worker.work(max_idle_time=2, logging_level="WARNING")  # the job, then 2 s idle, then it quits
    finally:
        stop.set()
        observer.join()
    mine = [(at, next(w for w in ws if w.name == worker.name), slow) for at, ws, slow in seen
            if any(w.name == worker.name for w in ws)]
    busy = [(at, w, slow) for at, w, slow in mine if w.state == "busy"]
    idle = [(at, w) for at, w, _ in mine if w.state == "idle"]
    assert busy and idle
    for _at, w, _slow in busy:  # never busy without a job
        assert (w.current_job, w.current_job_type) == (job_id, "slow-report") and w.idle_since is None
    started = busy[0][1].current_job_started
    # the fast worker's first look comes from the started registry (dequeue time), later ones from
    # its execution record (the run's start): a few milliseconds apart
    assert started is not None and all(abs((w.current_job_started - started).total_seconds()) < 0.1
                                       for _, w, _ in busy if w.current_job_started is not None)
    slow_seen = [at for at, w, slow in busy if slow]
    assert slow_seen and all(at - started.timestamp() > 0.5 for at in slow_seen)  # listed past the threshold
    ended = busy[-1][0]
    after = [(at, w) for at, w in idle if at > ended]
    assert after and all(w.current_job is None for _, w in after)
    since = after[-1][1].idle_since
    assert since is not None and ended - 0.1 <= since.timestamp() <= after[0][0] + 0.1  # when the job ended
    warnings = [r for r in caplog.records if "long-running job" in r.getMessage()]
    assert len(warnings) == 1 and job_id in warnings[0].getMessage() and "slow-report" in warnings[0].getMessage()
    assert warnings[0].created < ended  # while it ran, not after
    slow_engine.flush_history()
    lines = rows(database_url, "SELECT level, message FROM job_logs WHERE job_id=%s AND kind='long_running'", job_id)
    assert lines == [("warning", f"running for more than 0.5 s (on worker {worker.name})")]


def test_busy_needs_a_job_and_a_fast_workers_batch_is_its_job(redis_conn: redis.Redis) -> None:
    now = datetime.now(UTC)
    plain = Worker(["default"], connection=redis_conn, name="plain-rq")
    plain.register_birth()
    plain.set_state("busy")  # says busy, runs nothing: between jobs, or waiting on a rate limit
    fast = Worker(["default"], connection=redis_conn, name="fast-one")
    fast.register_birth()
    fast.set_state("busy")
    started = now - timedelta(seconds=3)
    redis_conn.hset(rq_job_key("held-1"), mapping={"worker_name": "fast-one", "started_at": utcformat(started),
                                                   "meta": pickle.dumps({"type": "email"}), "status": "started"})
    redis_conn.zadd(rq_started_key("default"), {"held-1:abc": time.time() + 240})
    read = read_workers(redis_conn, now)
    by_name = {w.name: w for w in read.workers}
    assert (by_name["plain-rq"].state, by_name["plain-rq"].current_job) == ("idle", None)
    assert by_name["plain-rq"].idle_since is not None  # never ran a job: idle since its birth
    assert abs((by_name["plain-rq"].idle_since - plain.birth_date).total_seconds()) < 1
    f = by_name["fast-one"]
    assert (f.state, f.current_job, f.current_job_type) == ("busy", "held-1", "email")
    assert f.current_job_started is not None and abs((f.current_job_started - started).total_seconds()) < 1
    assert [j.id for j in read.running] == ["held-1"]


def test_idle_since_moves_when_a_job_ends_and_is_unknown_before_one_is_seen(redis_conn: redis.Redis) -> None:
    w = Worker(["default"], connection=redis_conn, name="veteran")
    w.register_birth()
    w.set_state("idle")
    redis_conn.hset(w.key, "successful_job_count", 12)  # ran jobs before anyone looked
    t0 = datetime.now(UTC)
    assert read_workers(redis_conn, t0).workers[0].idle_since is None  # unknown, not "since now"
    assert read_workers(redis_conn, t0 + timedelta(seconds=5)).workers[0].idle_since is None
    redis_conn.hincrby(w.key, "successful_job_count", 1)  # a job ended between two looks
    t1 = t0 + timedelta(seconds=10)
    idle = read_workers(redis_conn, t1).workers[0].idle_since  # stored in milliseconds
    assert idle is not None and abs((idle - t1).total_seconds()) <= 0.002
    later = read_workers(redis_conn, t1 + timedelta(seconds=30)).workers[0]
    assert later.idle_since is not None and abs((later.idle_since - t1).total_seconds()) < 0.01  # kept
    redis_conn.srem("rq:workers", w.key)
    read_workers(redis_conn, t1)  # no worker left: nothing read, nothing written
    Worker(["default"], connection=redis_conn, name="other").register_birth()
    read_workers(redis_conn, t1)
    assert set(redis_conn.hkeys(ACTIVITY)) == {b"other"}  # the notes of workers gone are dropped


def test_the_warning_is_given_once_per_job_across_processes(slow_engine: Engine, redis_url: str,
                                                            database_url: str) -> None:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, long_running=0.5)
    with Engine(settings, migrate=False) as other:
        w = Worker(["default"], connection=slow_engine.connection, name="busy-one")
        w.register_birth()
        started = datetime.now(UTC) - timedelta(seconds=5)
        redis_conn = slow_engine.connection
        redis_conn.hset(rq_job_key("long-1"), mapping={"started_at": utcformat(started), "origin": "default",
                                                       "description": "app.tasks.crunch(1)"})
        redis_conn.hset("rq:execution:long-1:e1", mapping={"created_at": started.timestamp(), "last_heartbeat": 0})
        redis_conn.sadd("rq:worker:busy-one:executions", "long-1:e1")
        first = slow_engine.monitor.check_long_running()
        second = other.monitor.check_long_running()
        assert [j.id for j in first] == [j.id for j in second] == ["long-1"]  # both list it
        assert first[0].type == "crunch" and first[0].queue == "default"
        assert redis_conn.ttl(warned_key("long-1")) > 3600
        assert rows(database_url, "SELECT count(*) FROM job_logs WHERE job_id='long-1'") == [(1,)]  # one line


def test_the_watch_runs_once_per_interval_for_the_deployment(redis_conn: redis.Redis) -> None:
    calls: list[int] = []
    a = LongRunningWatch(redis_conn, lambda: calls.append(1), every=0.5)
    b = LongRunningWatch(redis_conn, lambda: calls.append(2), every=0.5)
    assert a.run_once() and not b.run_once()
    time.sleep(0.6)
    assert b.run_once()
    assert calls == [1, 2]


def test_job_type_of_reads_dispatch_meta_or_the_function() -> None:
    assert job_type_of(pickle.dumps({"type": "email"}), "x.y(1)") == "email"
    assert job_type_of(b"not a pickle", "app.tasks.send_email('a@b.c')") == "send_email"
    assert job_type_of(None, None) == "unknown"
