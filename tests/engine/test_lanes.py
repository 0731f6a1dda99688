"""Lanes: pause and resume through both worker families, keyset pages of a lane, run-now.

Real Redis and PostgreSQL; the pause tests run real `jobtui worker` processes (the fast worker
and `--classic`), since a worker installs signal handlers and so needs its own main thread.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from jobengine.errors import OperationRefused, ValidationError
from jobengine.exporter import exposition
from jobengine.runtime.gate import PAUSE_REFRESH, RECHECK, QueueGate
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle

ROOT = Path(__file__).resolve().parents[2]
ME = f"{getpass.getuser()}@{socket.gethostname()}"


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition()` held (fails after `timeout`)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def worker_process(redis_url: str, database_url: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                                 database_url, "worker", "--queues", "default,low", *extra], env=env, cwd=ROOT,
                                stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _queued(conn: redis.Redis, queue: str) -> int:
    return int(conn.llen(f"rq:queue:{queue}"))


@pytest.mark.parametrize("family", ["fast", "classic"])
def test_a_paused_queue_is_left_alone_by_running_workers_and_taken_again_on_resume(
        fast_engine: Engine, worker_process: Callable[..., subprocess.Popen[bytes]], database_url: str,
        family: str) -> None:
    conn = fast_engine.connection
    worker_process(*(["--classic"] if family == "classic" else []))
    warm = fast_engine.dispatch(jobs.noop, priority="low")  # the worker is up and serving `low`
    _wait(lambda: fast_engine.job_status(warm) == "finished", 60, "first job")

    assert fast_engine.pause("low", reason="mail provider down") is True
    assert fast_engine.pause("low") is False  # the first pause's who and why stay
    time.sleep(1.1)  # "within 1 s": from here on no worker takes from `low`
    held = [fast_engine.dispatch(jobs.noop, priority="low") for _ in range(3)]  # dispatch still enqueues
    other = fast_engine.dispatch(jobs.noop, priority="normal")
    _wait(lambda: fast_engine.job_status(other) == "finished", 10, "the other lane's job")
    time.sleep(1.0)
    assert _queued(conn, "low") == 3 and {fast_engine.job_status(j) for j in held} == {"queued"}
    info = fast_engine.paused_queues()["low"]
    assert (info.by, info.reason) == (ME, "mail provider down")
    assert [q.paused for q in fast_engine.snapshot().queues if q.name == "low"] == [info]
    assert 'queue_paused{queue="low"} 1.0' in exposition(conn, fast_engine.settings)
    assert 'queue_paused{queue="default"} 0.0' in exposition(conn, fast_engine.settings)

    assert fast_engine.resume("low") is True and fast_engine.resume("low") is False
    resumed = _wait(lambda: _queued(conn, "low") == 0, 10, "resumed lane drained")
    assert resumed < 2.0  # within 1 s (+ the run)
    assert 'queue_paused{queue="low"} 0.0' in exposition(conn, fast_engine.settings)
    audit = rows(database_url, "SELECT action, detail, os_user FROM audit_log WHERE action IN ('pause', 'resume') "
                               "ORDER BY id")
    assert audit == [("pause", "queue low: mail provider down", getpass.getuser()),
                     ("pause", "queue low (was paused already)", getpass.getuser()),
                     ("resume", "queue low", getpass.getuser()),
                     ("resume", "queue low (was not paused)", getpass.getuser())]


def test_a_burst_worker_leaves_a_paused_lane_and_runs_the_others(fast_engine: Engine) -> None:
    fast_engine.pause("low")
    held = fast_engine.dispatch(jobs.noop, priority="low")
    ran = fast_engine.dispatch(jobs.noop, priority="high")
    for classic in (False, True):
        fast_engine.worker(classic=classic).work(burst=True, logging_level="WARNING")
    assert fast_engine.job_status(ran) == "finished" and fast_engine.job_status(held) == "queued"
    fast_engine.resume("low")
    run_until_idle(fast_engine)
    assert fast_engine.job_status(held) == "finished"


def test_the_gate_reads_pauses_at_most_every_refresh(redis_conn: redis.Redis) -> None:
    gate = QueueGate(connection=redis_conn)
    assert set(gate.closed()) == {RECHECK}  # a pause-aware gate always names when it looks again
    redis_conn.hset("jobengine:queues:paused", "low", "{}")
    assert "low" not in gate.closed()  # read a moment ago: trusted for PAUSE_REFRESH
    time.sleep(PAUSE_REFRESH + 0.02)
    closed = gate.closed()
    assert "low" in closed and 0 < closed["low"] - time.monotonic() <= PAUSE_REFRESH
    assert QueueGate().closed() == {}  # no connection: no pauses (and nothing to re-check)


def test_pause_is_refused_read_only_and_validated(redis_url: str, database_url: str, fast_engine: Engine) -> None:
    ro = Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url, read_only=True))
    try:
        for call in (lambda: ro.pause("low"), lambda: ro.resume("low"), lambda: ro.run_now("x")):
            with pytest.raises(OperationRefused, match="read-only"):
                call()
        assert ro.paused_queues() == {}
    finally:
        ro.close()
    with pytest.raises(ValidationError, match="unknown queue"):
        fast_engine.pause("nope")
    with pytest.raises(ValidationError, match="reason"):
        fast_engine.pause("low", reason="x" * 501)


# ---- lane pages ---------------------------------------------------------------------------------

def test_queued_pages_follow_the_last_job_seen_even_as_workers_take(fast_engine: Engine) -> None:
    ids = fast_engine.dispatch_many([JobSpec(jobs.add, (i, 1), type="math.add", priority="low") for i in range(7)])
    first = fast_engine.lane_page("low", "queued", limit=3)
    assert [j.id for j in first.jobs] == ids[:3] and first.total == 7 and first.after is not None
    assert first.jobs[0].type == "math.add" and first.jobs[0].args is not None and "1" in first.jobs[0].args
    assert first.counts == {"queued": 7, "scheduled": 0, "running": 0, "finished": 0, "failed": 0, "canceled": 0}
    fast_engine.connection.lpop("rq:queue:low", 2)  # a worker takes the first two meanwhile
    second = fast_engine.lane_page("low", "queued", first.after, limit=3)
    assert [j.id for j in second.jobs] == ids[3:6]  # no job skipped, none twice
    last = fast_engine.lane_page("low", "queued", second.after, limit=3)
    assert [j.id for j in last.jobs] == ids[6:] and last.after is None


def test_scheduled_pages_are_soonest_first_with_due_times_and_ties_split_across_pages(
        fast_engine: Engine) -> None:
    ids = fast_engine.dispatch_many([JobSpec(jobs.noop, priority="low", delay=600 + i) for i in range(3)])
    conn = fast_engine.connection
    due = time.time() + 300
    tied = fast_engine.dispatch_many([JobSpec(jobs.noop, priority="low", delay=900) for _ in range(4)])
    conn.zadd("rq:scheduled:low", dict.fromkeys(tied, due))  # four jobs due at the same moment
    seen, after = [], None
    while True:
        page = fast_engine.lane_page("low", "scheduled", after, limit=2)
        seen += page.jobs
        if page.after is None:
            break
        after = page.after
    assert [j.id for j in seen] == sorted(tied) + ids  # by due time, then by id (Redis's order)
    assert seen[0].due_at is not None and abs(seen[0].due_at.timestamp() - due) < 0.01
    assert all(j.state == "scheduled" and j.rq_status == "scheduled" for j in seen)


def test_running_and_ended_registries_page_newest_first(fast_engine: Engine) -> None:
    done = [fast_engine.dispatch(jobs.noop, priority="low") for _ in range(3)]
    broken = fast_engine.dispatch(jobs.broken, 1, priority="low")
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    finished = fast_engine.lane_page("low", "finished", limit=10)
    assert sorted(j.id for j in finished.jobs) == sorted(done) and finished.after is None
    assert all(j.ended_at is not None for j in finished.jobs)
    [failed] = fast_engine.lane_page("low", "failed").jobs
    assert failed.id == broken and failed.type == "broken"
    assert fast_engine.lane_page("low", "running").jobs == ()
    with pytest.raises(ValidationError, match="state"):
        fast_engine.lane_page("low", "bogus")


def test_run_now_moves_a_scheduled_job_to_the_front_and_says_so(fast_engine: Engine, database_url: str) -> None:
    waiting = fast_engine.dispatch(jobs.noop, priority="low")
    [later] = fast_engine.dispatch_many([JobSpec(jobs.noop, priority="low", delay=3600)])
    assert fast_engine.lane_page("low", "scheduled").jobs[0].id == later
    detail = fast_engine.job_detail(later)
    assert detail is not None and detail.due_at is not None  # a scheduled job's detail says when it is due
    assert abs(detail.due_at.timestamp() - (time.time() + 3600)) < 30
    assert fast_engine.run_now(later) is True
    assert fast_engine.connection.lrange("rq:queue:low", 0, -1) == [later.encode(), waiting.encode()]
    assert fast_engine.connection.zcard("rq:scheduled:low") == 0
    assert fast_engine.job_status(later) == "queued"
    queued = fast_engine.job_detail(later)
    assert queued is not None and queued.due_at is None
    assert fast_engine.run_now(later) is False and fast_engine.run_now(waiting) is False
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    assert rows(database_url, "SELECT action, job_id FROM audit_log WHERE action = 'run_now'") == [("run_now", later)]
    messages = [m for (m,) in rows(database_url, "SELECT message FROM job_logs WHERE job_id = %s", later)]
    assert f"run now by {ME}" in messages
    assert fast_engine.job_status(later) == "finished"


def test_paused_state_survives_an_unreadable_entry(fast_engine: Engine) -> None:
    fast_engine.connection.hset("jobengine:queues:paused", "low", "not json")
    info = fast_engine.paused_queues()["low"]
    assert info.by == "?" and info.since == datetime.fromtimestamp(0, UTC)
