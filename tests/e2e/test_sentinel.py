"""Sentinel failover under load: a primary, a replica and three sentinels (tests/e2e/sentinel_cluster).

A producer dispatches continuously through a `redis+sentinel://` URL while a `jobtui worker`
process runs the jobs. The replica's link is cut 0.4 s before the primary is SIGKILLed (a partition
just before a crash), so the promoted replica misses the last writes. Dispatch and the worker carry
on against it; the jobs it never received are lost until an explicit reconcile re-creates them
from PostgreSQL. Prints the failover time and the jobs lost before and after reconcile.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from tests.e2e.sentinel_cluster import SentinelCluster

ROOT = Path(__file__).resolve().parents[2]
BATCH = 10
PAUSE = 0.05  # between batches: about 150 jobs a second
DELAY = 1.0  # every other job waits this long in the scheduled registry (not run before the kill)
_marks: dict[str, redis.Redis] = {}


def mark(url: str, token: str) -> None:
    """The job: counts its runs in the shared Redis (untouched by the failover)."""
    conn = _marks.get(url) or _marks.setdefault(url, redis.Redis.from_url(url))
    with conn.pipeline(transaction=False) as pipe:
        pipe.hincrby("runs", token, 1)
        pipe.zadd("first_run", {token: time.time()}, nx=True)
        pipe.execute()


class Producer(threading.Thread):
    """Dispatches BATCH jobs every PAUSE seconds; keeps (started, ended, ids or None) per call."""

    def __init__(self, engine: Engine, marks_url: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.marks_url = engine, marks_url
        self.calls: list[tuple[float, float, list[str] | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            ids = [uuid.uuid4().hex for _ in range(BATCH)]
            specs = [JobSpec(f"{__name__}:mark", (self.marks_url, i), priority="critical", type="mark", job_id=i,
                             delay=DELAY if n % 2 else None) for n, i in enumerate(ids)]
            started = time.time()
            try:
                self.engine.dispatch_many(specs)
                self.calls.append((started, time.time(), ids))
            except Exception:  # noqa: BLE001 - counted: a failed dispatch is what the test measures
                self.calls.append((started, time.time(), None))
            time.sleep(PAUSE)

    def acknowledged(self) -> list[str]:
        return [i for _, _, ids in self.calls if ids for i in ids]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _lost(conn: redis.Redis, database_url: str, ids: list[str]) -> list[str]:
    """Acknowledged jobs whose job hash the (new) master lacks and that PostgreSQL does not hold
    as finished: nothing will run them, nor report how they ended."""
    with conn.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.exists(f"rq:job:{i}")
        exists = pipe.execute()
    missing = [i for i, e in zip(ids, exists, strict=True) if not e]
    with psycopg.connect(database_url) as pg:
        done = {r[0] for r in pg.execute("SELECT id FROM jobs WHERE id = ANY(%s) AND status = 'finished'",
                                         (missing,))}
    return [i for i in missing if i not in done]


def _in_flight(database_url: str, ids: list[str]) -> int:
    with psycopg.connect(database_url) as pg:
        row = pg.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status <> 'finished'", (ids,)).fetchone()
    return int(row[0]) if row else -1


def _unran(marks: redis.Redis, ids: list[str]) -> list[str]:
    ran = set(marks.hkeys("runs"))
    return [i for i in ids if i.encode() not in ran]


def test_failover_under_load(tmp_path: Path, database_url: str, redis_conn: redis.Redis, redis_url: str) -> None:
    if subprocess.run(["redis-server", "--version"], capture_output=True).returncode:
        pytest.skip("no redis-server")
    cluster = SentinelCluster(tmp_path).start()
    url = cluster.url(0)
    settings = Settings.load(env={}, redis_url=url, database_url=database_url)
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", url, "--database-url",
                               database_url, "worker"], env=_env(), cwd=ROOT, stdout=log, stderr=log)
    engine = Engine(settings)
    producer = Producer(engine, redis_url)
    try:
        producer.start()
        assert _wait_for(lambda: redis_conn.hlen("runs") > 0, 30), "the worker ran nothing"
        time.sleep(4)  # steady load
        dequeue = hashlib.sha1((ROOT / "jobengine/runtime/dequeue.lua").read_bytes()).hexdigest()
        assert cluster.client(cluster.primary).script_exists(dequeue) == [True]
        assert cluster.client(cluster.replica).script_exists(dequeue) == [False]  # the worker must reload it
        cluster.cut_replication()
        time.sleep(0.4)  # writes the replica never receives
        killed = time.time()
        cluster.kill_primary()
        assert _wait_for(lambda: any(s > killed and ids for s, _, ids in producer.calls), 30), \
            "dispatch never worked again"
        time.sleep(5)  # keep going against the promoted replica
        producer.stop.set()
        producer.join(timeout=30)
        assert cluster.master_port() == cluster.replica
        ids = producer.acknowledged()
        after = [i for s, _, got in producer.calls if s > killed and got for i in got]
        failover = min(e for s, e, got in producer.calls if s > killed and got) - killed
        failed_calls = sum(got is None for _, _, got in producer.calls)
        conn = engine.connection
        # the worker drains what the new master holds: what it never ran then is what it lacks
        assert _wait_for(lambda: set(_unran(redis_conn, ids)) <= set(_lost(conn, database_url, ids)), 30), \
            f"{len(set(_unran(redis_conn, ids)) - set(_lost(conn, database_url, ids)))} jobs held by Redis never ran"
        resumed = min(float(t) for t in redis_conn.zmscore("first_run", after) if t is not None) - killed
        lost_before, never_ran = _lost(conn, database_url, ids), _unran(redis_conn, ids)
        report = engine.reconciler(grace=0).run()
        assert _wait_for(lambda: not _unran(redis_conn, ids) and not _lost(conn, database_url, ids), 30), \
            f"after reconcile: {len(_lost(conn, database_url, ids))} missing, {len(_unran(redis_conn, ids))} never ran"
        lost_after = _lost(conn, database_url, ids)
        history = _wait_for(lambda: _in_flight(database_url, ids) == 0, 30)  # the history writer carried on
        twice = sum(int(n) > 1 for n in redis_conn.hvals("runs"))
        print(f"\nsentinel failover: {len(ids)} jobs acknowledged ({len(after)} after the kill), "
              f"{failed_calls} dispatch calls failed; dispatch worked again {failover:.2f} s after the kill, "
              f"the worker ran a new job {resumed:.2f} s after it; lost before reconcile {len(lost_before)} "
              f"({len(never_ran)} never ran, {len(lost_before) - len(never_ran)} ran on the old primary), "
              f"after {len(lost_after)}; ran twice {twice}; reconcile: {report.summary()}")
        assert worker.poll() is None, "the worker exited"
        assert never_ran, "the replica missed no job: the scenario did not happen"
        assert report.restored_total == len(lost_before)
        assert lost_after == []
        assert history, f"PostgreSQL still holds {_in_flight(database_url, ids)} of the jobs in flight"
        assert failover < 15 and resumed < 15
    finally:
        producer.stop.set()
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        if os.environ.get("JOBTUI_TEST_KEEP_LOG"):
            shutil.copy(tmp_path / "worker.log", os.environ["JOBTUI_TEST_KEEP_LOG"])
        engine.close()
        cluster.stop()
