"""PostgreSQL stopped for 60 s under load (a private cluster, pg_ctl stop/start) with two
`jobtui worker` processes: the processing rate holds (within 10%), `jobtui dispatch` works during
the outage, `jobtui health` fails naming PostgreSQL, and afterwards every row arrives exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from tests.e2e.conftest import RedisServer
from tests.e2e.private_servers import PrivatePostgres, private_pg  # noqa: F401
from tests.engine import jobs

ROOT = Path(__file__).resolve().parents[2]
JOB_SECONDS = 0.01  # sleep-bound jobs: the rate measures the pipeline, not the shared CPUs
OUTAGE = 60.0
BEFORE = 10.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _jobtui(servers: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobtui.cli", *servers, *args], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=60)


def _drain_rate(conn: redis.Redis, seconds: float, during: object = None) -> float:
    """Jobs taken off the critical queue per second over `seconds` (calling `during()` halfway)."""
    start, t0 = int(conn.llen("rq:queue:critical")), time.monotonic()
    if during is not None:
        time.sleep(seconds / 2)
        during()  # type: ignore[operator]
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    end, t1 = int(conn.llen("rq:queue:critical")), time.monotonic()
    return (start - end) / (t1 - t0)


def _q(url: str, sql: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def test_postgres_down_60s_under_load(private_pg: PrivatePostgres, private_redis: RedisServer,  # noqa: F811
                                      tmp_path: Path) -> None:
    redis_url = private_redis.url()  # tests/e2e/conftest.py's private redis-server
    settings = Settings.load(env={}, redis_url=redis_url, database_url=private_pg.url)
    servers = ["--redis-url", redis_url, "--database-url", private_pg.url]
    conn = redis.Redis.from_url(redis_url)
    total = 16_000
    with Engine(settings) as engine:  # migrates the fresh cluster
        for _ in range(0, total, 2000):
            engine.dispatch_many([JobSpec(jobs.sleepy, (JOB_SECONDS,), priority="critical", type="nap")
                                  for _n in range(2000)])
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
    workers = [subprocess.Popen([sys.executable, "-m", "jobtui.cli", *servers, "worker"], env=_env(), cwd=ROOT,
                                stdout=log, stderr=log) for log in logs]
    cli_job: dict[str, object] = {}
    try:
        time.sleep(3)  # start-up and warm-up
        before = _drain_rate(conn, BEFORE)
        private_pg.stop()
        stopped = time.monotonic()

        def during_outage() -> None:
            dispatched = _jobtui(servers, "dispatch", "tests.engine.jobs:noop", "--priority", "critical",
                                 "--type", "cli-during-outage")
            health = _jobtui(servers, "health", "--json")
            cli_job.update(dispatch=dispatched, health=health)

        during = _drain_rate(conn, OUTAGE, during_outage)
        private_pg.start()
        outage = time.monotonic() - stopped
        print(f"\nprocessing rate: {before:.1f} jobs/s before, {during:.1f} jobs/s with PostgreSQL down "
              f"({outage:.0f} s); {int(conn.xlen('jobengine:events')):,} events waited in Redis")
        assert outage >= OUTAGE
        assert abs(during - before) <= 0.10 * before, (before, during)
        dispatched = cli_job["dispatch"]
        assert isinstance(dispatched, subprocess.CompletedProcess)
        assert dispatched.returncode == 0, dispatched.stderr
        cli_id = dispatched.stdout.strip().splitlines()[-1]
        health = cli_job["health"]
        assert isinstance(health, subprocess.CompletedProcess)
        report = json.loads(health.stdout)
        assert (health.returncode, report["verdict"], report["postgres_ok"]) == (1, "failing", False)
        assert report["reasons"][0].startswith(f"PostgreSQL at 127.0.0.1:{private_pg.port}/postgres is unreachable")
        restarted = time.monotonic()
        while conn.xlen("jobengine:events") and time.monotonic() < restarted + 90:
            time.sleep(0.2)  # the writers' back-off is at most 10 s; a loaded machine takes longer
        left = conn.xlen("jobengine:events")
        assert left == 0, (left, conn.xpending("jobengine:events", "history"),
                           conn.xrange("jobengine:events", count=3))
        print(f"history caught up {time.monotonic() - restarted:.1f} s after PostgreSQL came back")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=60) for w in workers]
        for log in logs:
            log.close()
    assert codes == [0, 0], [(tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)]
    url = private_pg.url
    finished_in_redis = int(conn.zcard("rq:finished:critical"))
    assert _q(url, "SELECT count(*) FROM jobs") == total + 1
    assert _q(url, "SELECT count(*) FROM jobs WHERE status = 'finished'") == finished_in_redis
    assert _q(url, f"SELECT type FROM jobs WHERE id = '{cli_id}'") == "cli-during-outage"
    # exactly once: one log line per job and kind (a run's start and its end), none twice
    assert _q(url, "SELECT count(*) FROM (SELECT 1 FROM job_logs GROUP BY job_id, kind HAVING count(*) > 1) d") == 0
    assert _q(url, "SELECT count(DISTINCT job_id) FROM job_logs WHERE kind = 'finished'") == finished_in_redis
    assert _q(url, "SELECT count(*) FROM job_logs WHERE kind = 'started'") == \
        _q(url, "SELECT sum(attempts) FROM jobs")
