"""Pruning: old finished history goes, failures within --keep-failed, jobs in flight and recent
history stay; RQ's registries are trimmed; one pruner at a time."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rq.registry import FinishedJobRegistry

from jobengine import Engine, JobSpec
from jobengine.models import JobEvent
from jobengine.prune import PruneTimer, exclusive, parse_duration
from jobengine.types import EventKind
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle, scalar

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count(1)
NOW = datetime.now(UTC)


def _event(kind: EventKind, job_id: str, days_ago: float, **details: object) -> JobEvent:
    return JobEvent(event_id=f"2-{next(_ids)}", kind=kind, job_id=job_id, at=NOW - timedelta(days=days_ago),
                    queue="default", type="report", **details)  # type: ignore[arg-type]


def _run(job_id: str, ended_days_ago: float, outcome: EventKind) -> list[JobEvent]:
    """A job queued, started and ended `ended_days_ago` days ago (three job_logs rows)."""
    extra = {"error_class": "ValueError", "error_message": "bad"} if outcome is EventKind.FAILED else {}
    return [_event(EventKind.QUEUED, job_id, ended_days_ago + 0.01),
            _event(EventKind.STARTED, job_id, ended_days_ago + 0.005, attempt=1),
            _event(outcome, job_id, ended_days_ago, attempt=1, **extra)]


@pytest.fixture
def history(engine: Engine) -> Engine:
    engine.store.apply_events(
        _run("old-done", 10, EventKind.FINISHED) + _run("old-stopped", 9, EventKind.STOPPED)
        + _run("old-failed", 9, EventKind.FAILED) + _run("recent-done", 1, EventKind.FINISHED)
        + _run("recent-failed", 2, EventKind.FAILED)
        + [_event(EventKind.QUEUED, "old-in-flight", 12), _event(EventKind.STARTED, "old-in-flight", 11, attempt=1)])
    return engine


def jobtui(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "jobtui.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)


def _job_ids(database_url: str) -> set[str]:
    return {r[0] for r in rows(database_url, "SELECT id FROM jobs")}


def test_prune_keeps_what_it_must(history: Engine, redis_url: str, database_url: str) -> None:
    servers = ["--redis-url", redis_url, "--database-url", database_url]
    dry = jobtui(*servers, "prune", "--older-than", "7d", "--keep-failed", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 2 jobs" in dry.stdout and "6 job log rows and 0 failed-job rows" in dry.stdout
    assert len(_job_ids(database_url)) == 6  # a dry run deletes nothing

    done = jobtui(*servers, "prune", "--older-than", "7d", "--keep-failed", "30d")
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL: removed 2 jobs" in done.stdout
    assert _job_ids(database_url) == {"old-failed", "recent-done", "recent-failed", "old-in-flight"}
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id IN ('old-done', 'old-stopped')") == 0
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id = 'old-failed'") == 3
    assert scalar(database_url, "SELECT count(*) FROM failed_jobs") == 2

    shorter = jobtui(*servers, "prune", "--older-than", "7d", "--keep-failed", "5d")
    assert "removed 1 jobs" in shorter.stdout and "1 failed-job rows" in shorter.stdout
    assert _job_ids(database_url) == {"recent-done", "recent-failed", "old-in-flight"}
    assert rows(database_url, "SELECT status FROM jobs WHERE id = 'old-in-flight'") == [("processing",)]


@pytest.mark.parametrize("args,needle", [
    (["prune", "--older-than", "7x"], "--older-than: '7x' is not a duration"),
    (["prune", "--older-than", "7d", "--keep-failed", "soon"], "--keep-failed: 'soon' is not a duration"),
    (["worker", "--burst", "--prune-every", "-1h"], "--prune-every: '-1h' is not a duration"),
])
def test_bad_durations_are_one_line(redis_url: str, database_url: str, args: list[str], needle: str) -> None:
    result = jobtui("--redis-url", redis_url, "--database-url", database_url, *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "12h", "7d", "2w", "1.5h")] == \
        [90, 900, 43200, 604800, 1209600, 5400]
    for bad in ("", "7", "d", "0d", "7 days"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)


def test_prune_trims_rq_registries(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    old, recent = fast_engine.dispatch_many([JobSpec(jobs.noop), JobSpec(jobs.noop)])
    run_until_idle(fast_engine)
    registry = FinishedJobRegistry("default", connection=conn)
    assert set(registry.get_job_ids()) == {old, recent}
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn.hset(f"rq:job:{old}", "ended_at", ten_days_ago)
    conn.zadd(registry.key, {"vanished-job": time.time() + 400})  # its hash expired or was deleted

    dry = fast_engine.pruner().run(7 * 86400, dry_run=True)
    assert (dry.rq_finished, dry.rq_dangling) == (1, 1)
    assert conn.zcard(registry.key) == 3

    report = fast_engine.pruner().run(7 * 86400)
    assert (report.rq_finished, report.rq_dangling) == (1, 1)
    assert registry.get_job_ids() == [recent]
    assert not conn.exists(f"rq:job:{old}") and conn.exists(f"rq:job:{recent}")


def test_one_pruner_at_a_time(history: Engine, database_url: str) -> None:
    timer = PruneTimer(history.pruner(), every=3600, older_than=7 * 86400, keep_failed=30 * 86400)
    with exclusive(history.connection, timeout=60) as mine:
        assert mine
        assert timer.run_once() is None  # another process holds the lock: skip this round
        assert len(_job_ids(database_url)) == 6
    report = timer.run_once()
    assert report is not None and report.jobs == 2
    assert len(_job_ids(database_url)) == 4


def test_worker_prunes_periodically(history: Engine, redis_url: str, database_url: str) -> None:
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    worker = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                               database_url, "worker", "--prune-every", "1s"], env=env, cwd=ROOT,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "old-done" in _job_ids(database_url):  # 7 days of history, 30 days of failures by default
            assert time.monotonic() < deadline and worker.poll() is None, "the worker did not prune"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert _job_ids(database_url) == {"old-failed", "recent-done", "recent-failed", "old-in-flight"}
