"""`jobtui health`: exit 0 healthy (warnings too), 1 failing, 2 cannot check; plain-sentence reasons."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobengine import Engine, JobSpec
from jobengine.models import JobEvent
from jobengine.types import EventKind
from tests.engine import jobs

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count(1)


def event(kind: EventKind, job_id: str, at: datetime, **details: object) -> JobEvent:
    return JobEvent(event_id=f"1-{next(_ids)}", kind=kind, job_id=job_id, at=at, queue="default",
                    type="report", **details)  # type: ignore[arg-type]


def health(redis_url: str, database_url: str, tmp_path: Path, config: str = "") -> tuple[int, dict]:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "jobtui.cli", "--config", str(cfg), "--redis-url", redis_url,
                             "--database-url", database_url, "health", "--json"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_healthy(engine: Engine, redis_url: str, database_url: str, tmp_path: Path) -> None:
    code, report = health(redis_url, database_url, tmp_path)
    assert (code, report["verdict"]) == (0, "healthy")
    assert report["redis_ok"] and report["postgres_ok"]
    assert report["reasons"][0].startswith("All checks pass: Redis and PostgreSQL answer, 0 workers alive")


def test_too_many_failures_in_the_last_hour_fail(engine: Engine, redis_url: str, database_url: str,
                                                 tmp_path: Path) -> None:
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.FAILED, f"f{i}", now - timedelta(minutes=5 + i), attempt=1,
                                     error_class="ValueError", error_message="bad") for i in range(3)]
                              + [event(EventKind.FAILED, "old", now - timedelta(hours=2), attempt=1,
                                       error_class="ValueError", error_message="bad")])
    code, report = health(redis_url, database_url, tmp_path, "[thresholds]\nfailed_per_hour = 3\n")
    assert (code, report["verdict"]) == (0, "healthy")  # 3 is not more than 3; the 2 h old one does not count
    code, report = health(redis_url, database_url, tmp_path, "[thresholds]\nfailed_per_hour = 2\n")
    assert (code, report["verdict"], report["failures_last_hour"]) == (1, "failing", 3)
    assert report["reasons"] == ["3 jobs failed in the last hour, more than the threshold of 2."]


def test_stuck_job_fails_and_is_named(engine: Engine, redis_url: str, database_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.STARTED, "stuck-1", now - timedelta(hours=3), attempt=1,
                                     worker="w-east"),
                               event(EventKind.STARTED, "busy-1", now - timedelta(minutes=10), attempt=1)])
    code, report = health(redis_url, database_url, tmp_path)
    assert (code, report["verdict"], report["stuck_jobs"]) == (1, "failing", ["stuck-1"])
    assert report["reasons"] == ["1 job has been processing for more than 2 h: stuck-1 (report on w-east, "
                                 "started 3 h ago)."]


def test_queue_over_its_threshold_warns(fast_engine: Engine, redis_url: str, database_url: str,
                                        tmp_path: Path) -> None:
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(3)])
    code, report = health(redis_url, database_url, tmp_path, "[thresholds.queue_size]\ndefault = 2\n")
    assert (code, report["verdict"]) == (0, "warning")
    assert report["reasons"] == ["Queue default holds 3 jobs, over its threshold of 2.",
                                 "No worker is running but jobs are waiting."]


def test_worker_with_an_overdue_heartbeat_is_named(engine: Engine, redis_url: str, database_url: str,
                                                   tmp_path: Path) -> None:
    alive, silent = engine.worker(name="alive"), engine.worker(name="silent")
    for w in (alive, silent):
        w.register_birth()
    engine.connection.expire(silent.key, 30)  # its next heartbeat is overdue: RQ's grace is 60 s
    code, report = health(redis_url, database_url, tmp_path)
    assert (code, report["verdict"], report["workers"]) == (0, "warning", 2)
    assert len(report["reasons"]) == 1
    assert report["reasons"][0].startswith(f"Worker silent on {silent.hostname} (pid {silent.pid}) last sent a "
                                           "heartbeat ")


def test_unreachable_redis_cannot_check(engine: Engine, database_url: str, tmp_path: Path) -> None:
    code, report = health("redis://127.0.0.1:1/0", database_url, tmp_path)
    assert (code, report["verdict"]) == (2, "unknown")
    assert "Redis at 127.0.0.1:1/0 is unreachable" in report["reasons"][0]
    assert report["redis_ok"] is False and report["postgres_ok"] is True


def test_unreachable_postgres_fails_with_a_verdict(engine: Engine, redis_url: str, tmp_path: Path) -> None:
    """PostgreSQL down is a verdict, not "cannot check": Redis still answers for the rest."""
    code, report = health(redis_url, "postgresql://postgres@127.0.0.1:1/x", tmp_path)
    assert (code, report["verdict"]) == (1, "failing")
    assert report["reasons"][0].startswith("PostgreSQL at 127.0.0.1:1/x is unreachable")
    assert "Job history waits in Redis" in report["reasons"][0]
    assert report["redis_ok"] is True and report["postgres_ok"] is False


def test_engine_health_matches_the_snapshot_verdict(engine: Engine) -> None:
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.STARTED, "stuck-2", now - timedelta(hours=5), attempt=1)])
    assert engine.health().verdict == "failing" and engine.health().exit_code == 1
    assert engine.monitor.snapshot(shared=False).health.stuck_jobs == ("stuck-2",)
