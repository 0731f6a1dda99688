"""Rate limits: the moving window, run-time overrides, the worker's gate and deferrals."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from jobengine import Engine, JobSpec
from jobengine.ratelimit import QueueLimit, RateLimit, RateLimiter, effective_limits, parse_overrides
from tests.engine import jobs
from tests.engine.helpers import rows, scalar

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "jobtui.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


# ---- the limiter ----------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["moving-window", "limits"])
def test_window_admits_the_limit_then_says_when_a_slot_opens(redis_conn: redis.Redis, strategy: str) -> None:
    limiter = RateLimiter(redis_conn, {"default": 3}, strategy=strategy)
    assert [limiter.check("default", f"job-{i}") for i in range(3)] == [None, None, None]
    wait = limiter.check("default", "job-3")
    assert wait is not None and 55.0 < wait <= 60.0  # the first hit leaves the 60 s window
    assert limiter.check("critical") is None  # no limit configured: always runs


def test_override_raise_off_and_reset(redis_conn: redis.Redis) -> None:
    """The check reads the override itself: no restart, no cache to expire on the worker side."""
    worker_side = RateLimiter(redis_conn, {"default": 2})
    operator = RateLimiter(redis_conn, {"default": 2})
    admitted = [worker_side.check("default") is None for _ in range(3)]
    assert admitted == [True, True, False]
    operator.set_limit("default", 4)
    admitted = [worker_side.check("default") is None for _ in range(3)]
    assert admitted == [True, True, False]  # 4 in the window now
    operator.set_limit("default", None)  # --off
    assert all(worker_side.check("default") is None for _ in range(5))
    assert operator.reset_limit("default") is True  # back to the configured 2: the window is full
    assert worker_side.check("default") is not None


def test_a_lowered_limit_waits_for_enough_hits_to_leave(redis_conn: redis.Redis) -> None:
    limiter = RateLimiter(redis_conn, {"default": 5})
    assert all(limiter.check("default") is None for _ in range(5))
    limiter.set_limit("default", 2)
    decision = limiter.decide("default")
    assert (decision.allowed, decision.limit, decision.used) == (False, 2, 5)


def test_an_override_on_an_unconfigured_queue_is_seen_within_the_refresh(redis_conn: redis.Redis) -> None:
    limiter = RateLimiter(redis_conn, {}, refresh=0.0)
    assert limiter.check("low") is None
    RateLimiter(redis_conn, {}).set_limit("low", 1)
    assert limiter.check("low") is None
    assert limiter.check("low") is not None


# ---- the worker's gate ------------------------------------------------------------------------------

def test_deferred_job_is_not_an_attempt_and_is_logged_once(fast_engine: Engine, database_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    fast_engine.set_limit("default", 1)
    first, second = fast_engine.dispatch_many([JobSpec(jobs.noop), JobSpec(jobs.noop)])
    registry = ScheduledJobRegistry("default", connection=fast_engine.connection)
    with caplog.at_level(logging.INFO, logger="jobengine.worker"):
        fast_engine.worker().work(burst=True, logging_level="WARNING")
        assert registry.get_job_ids() == [second]
        # time passes for the scheduler (the slot is still taken): deferred again, not logged again
        fast_engine.connection.zadd(registry.key, {second: time.time() - 1})
        fast_engine.worker().work(burst=True, with_scheduler=True, logging_level="WARNING")
    assert registry.get_job_ids() == [second]
    job = Job.fetch(second, connection=fast_engine.connection)
    assert job.get_status() == "scheduled" and not job.number_of_retries and job.meta["deferrals"] == 2
    logged = [r.getMessage() for r in caplog.records if "deferred" in r.getMessage()]
    assert len(logged) == 1  # logged once per job, however often it is deferred
    assert logged[0].startswith(f"job {second} (noop) deferred ") and "queue default is at its rate limit (1/min)" \
        in logged[0]
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", second) == [("scheduled", 0)]
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id=%s AND kind='deferred'", second) == 2
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id=%s AND kind='started'", second) == 0
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", first) == [("finished", 1)]

    # a slot opens (the operator lifts the limit) and the job comes due: its first attempt
    fast_engine.set_limit("default", None)
    fast_engine.connection.zadd(registry.key, {second: time.time() - 1})
    fast_engine.worker().work(burst=True, with_scheduler=True, logging_level="WARNING")
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", second) == [("finished", 1)]
    assert rows(database_url, "SELECT attempt FROM job_logs WHERE job_id=%s AND kind='started'", second) == [(1,)]


def test_a_held_queue_does_not_stop_the_other_lanes(fast_engine: Engine) -> None:
    fast_engine.set_limit("default", 1)
    normal = fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(3)])
    low = fast_engine.dispatch_many([JobSpec(jobs.noop, priority="low") for _ in range(2)])
    fast_engine.worker().work(burst=True, logging_level="WARNING")
    conn = fast_engine.connection
    assert all(Job.fetch(j, connection=conn).get_status() == "finished" for j in low)
    statuses = [Job.fetch(j, connection=conn).get_status() for j in normal]
    assert statuses == ["finished", "scheduled", "queued"]  # the worker left `default` alone after one deferral


def test_limit_holds_across_worker_processes(fast_engine: Engine, redis_url: str, database_url: str,
                                             tmp_path: Path) -> None:
    """The window lives in Redis: a second `jobtui worker` process sees the first one's
    admissions (3 of 5), runs 2 and defers the rest. One process at a time, so which process
    takes which job does not depend on the machine's scheduling."""
    conn = fast_engine.connection
    fast_engine.set_limit("default", 5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url", database_url,
            "worker", "--queues", "default"]
    pids = tmp_path / "pids"

    def ran() -> list[str]:
        return pids.read_text().split() if pids.exists() else []

    def phase(jobs_now: int, until: Callable[[], bool], what: str) -> tuple[int, list[str]]:
        worker = subprocess.Popen(argv, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            _until(lambda: conn.scard("rq:workers") == 1, "the worker registered")
            ids = fast_engine.dispatch_many([JobSpec(jobs.write_pid, (str(pids),)) for _ in range(jobs_now)])
            _until(until, what)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        _until(lambda: conn.scard("rq:workers") == 0, "the worker left")
        return worker.pid, ids

    first, early = phase(3, lambda: len(ran()) == 3, "the first process ran three jobs")
    # The second process runs what the window has left, then defers a job and leaves the queue
    # alone until a slot opens (about a minute): the other six stay queued meanwhile.
    second, late = phase(9, lambda: int(conn.hget("jobengine:metrics:deferred", "default") or 0) >= 1
                         and conn.zcard("rq:wip:default") == 0, "the second process deferred a job")
    assert ran() == [str(first)] * 3 + [str(second)] * 2  # five in the minute, across the two processes
    fast_engine.flush_history()
    ids = early + late
    assert scalar(database_url, "SELECT count(*) FROM jobs WHERE status='finished'") == 5
    assert scalar(database_url, "SELECT sum(attempts) FROM jobs WHERE id = ANY(%s)", ids) == 5
    deferred = rows(database_url, "SELECT DISTINCT job_id FROM job_logs WHERE kind='deferred'")
    assert len(deferred) == 1 and conn.llen("rq:queue:default") == 6
    assert scalar(database_url, "SELECT max(attempts) FROM jobs WHERE id = ANY(%s)",
                  [d[0] for d in deferred]) == 0  # a deferral is not an attempt


def _until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


# ---- jobtui limit ---------------------------------------------------------------------------------

def test_limit_command_changes_every_workers_limit(engine: Engine, redis_url: str, database_url: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    result = _cli(*servers, "limit", "default", "7")
    assert result.returncode == 0, result.stderr
    assert engine.limiter.table.effective("default", fresh=True).amount == 7
    listing = json.loads(_cli(*servers, "limit", "--json").stdout)
    assert {"queue": "default", "configured": None, "override": 7, "effective": 7,
            "used_last_minute": 0} in listing
    assert _cli(*servers, "limit", "default", "--off").returncode == 0
    assert engine.limiter.table.effective("default", fresh=True) is None
    assert _cli(*servers, "limit", "default", "--reset").returncode == 0
    assert engine.limiter.table.overrides(fresh=True) == {}
    audit = [(a["action"], a["detail"]) for a in engine.store.audit_entries()]
    assert audit == [("limit", "default=config"), ("limit", "default=off"), ("limit", "default=7")]


@pytest.mark.parametrize("args,needle", [
    (["limit", "default", "many"], "whole number of jobs per minute"),
    (["limit", "default", "-3"], "whole number"),
    (["limit", "default", "5", "--off"], "exactly one of N, --off or --reset"),
    (["limit", "--off"], "name the queue"),
])
def test_limit_command_bad_input_is_one_line(redis_url: str, database_url: str, args: list[str],
                                             needle: str) -> None:
    result = _cli("--redis-url", redis_url, "--database-url", database_url, *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_one_merge_rule_override_wins_off_unlimits_garbage_ignored() -> None:
    overrides = parse_overrides({b"a": b"3", b"b": b"off", b"c": b"lots", "d": "0"})
    assert overrides == {"a": RateLimit(3), "b": None, "d": RateLimit(0)}  # "lots" is ignored
    merged = effective_limits({"a": 10, "b": 10, "c": 10, "e": 5}, overrides)
    assert merged == {"a": RateLimit(3), "b": None, "c": RateLimit(10), "d": RateLimit(0), "e": RateLimit(5)}
    assert QueueLimit("b", RateLimit(10), None, True).effective is None
    assert QueueLimit("c", RateLimit(10), None, False).effective == RateLimit(10)
