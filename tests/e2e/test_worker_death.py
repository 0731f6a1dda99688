"""SIGKILL of worker processes under load, as an operator's OOM killer would: three kills during
1,000 jobs across two `jobtui worker` processes (the killed one restarted each time), with 2-5 ms
jobs, then with 10% of 1-2 s jobs. Afterwards every job finished, each exactly once or again by
at-least-once (counted by the job's own side effect, and said so in its history), no job that
never ran failed, none stays queued/processing in PostgreSQL, and each dead worker was recovered
within the window (10 s here; the default window is checked in tests/engine/test_recovery.py)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobengine import Engine, JobSpec, Settings, keys
from jobengine.runtime.recovery import check_every
from tests.e2e.conftest import Cluster, RedisServer, running_cluster, settle_history, wait_for
from tests.e2e.jobs import touch

pytestmark = pytest.mark.slow

WINDOW = 10.0  #: recovery_after in these tests
RECOVERY_LIMIT = WINDOW + check_every(WINDOW) + 3  #: alive key expiry + one check + slack


@pytest.fixture
def cluster(private_redis: RedisServer, database_url: str, tmp_path: Path) -> Iterator[tuple[Cluster, Engine]]:
    with running_cluster(private_redis.url(), database_url, tmp_path, WINDOW) as running:
        yield running


class RecoveryClock:
    """Times, in a thread, how long after its kill each dead worker left `jobengine:workers`."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connection
        self.killed: dict[str, float] = {}
        self.recovered: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def killed_at(self, name: str, at: float) -> None:
        self.killed[name] = at

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, at in list(self.killed.items()):
                if name not in self.recovered and not self.conn.sismember(keys.WORKERS, name):
                    self.recovered[name] = time.time() - at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def holding(engine: Engine, cluster: Cluster, prefer_running: bool) -> str:
    """A live worker holding jobs (with `prefer_running`, one running a job past `hold`)."""
    conn = engine.connection
    for _ in range(200):
        alive = [n for n in cluster.alive() if conn.exists(keys.worker_alive_key(n))]
        held = {n: conn.hgetall(keys.worker_held_key(n)) for n in alive}
        good = [n for n, h in held.items() if (b"running" in h) if prefer_running] or \
               [n for n, h in held.items() if len(h) > 1]
        if good:
            return good[0]
        time.sleep(0.01)
    return cluster.alive()[0]


def run_with_kills(cluster: Cluster, engine: Engine, durations: list[float], prefer_running: bool) -> dict:
    conn = engine.connection
    workers = [cluster.start(), cluster.start()]
    wait_for(lambda: all(conn.exists(keys.worker_alive_key(w)) for w in workers), 30, what="two workers")
    clock = RecoveryClock(engine)
    started = time.time()
    ids = engine.dispatch_many([JobSpec(touch, (d,)) for d in durations])
    n = len(ids)
    for k in (1, 2, 3):
        wait_for(lambda k=k: int(conn.get("ended") or 0) >= n * k // 4, 120, 0.005, f"{k}/4 of the jobs")
        victim = holding(engine, cluster, prefer_running)
        clock.killed_at(victim, cluster.kill(victim))
        cluster.start()
    wait_for(lambda: len(clock.recovered) == 3, 3 * RECOVERY_LIMIT, what="the recovery of the three dead workers")
    wait_for(lambda: all(conn.llen(keys.rq_queue_key(q)) == 0 and conn.zcard(keys.rq_started_key(q)) == 0
                         and conn.zcard(keys.rq_scheduled_key(q)) == 0 for q in engine.settings.queues),
             120, what="every queue to drain")
    settle_history(engine)
    clock.stop()
    runs = [int(r or 0) for r in conn.mget([f"runs:{j}" for j in ids])]
    return {"ids": ids, "runs": dict(zip(ids, runs, strict=True)), "recovery": clock.recovered,
            "seconds": time.time() - started, "alive": cluster.alive()}


def check(engine: Engine, database_url: str, result: dict, label: str) -> None:
    ids, runs, recovery = result["ids"], result["runs"], result["recovery"]
    with psycopg.connect(database_url) as pg:
        statuses = dict(pg.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        recovered = {j for (j,) in pg.execute("SELECT DISTINCT job_id FROM job_logs WHERE message LIKE "
                                              "'%%recovered by%%'").fetchall()}
        finishes = dict(pg.execute("SELECT job_id, count(*) FROM job_logs WHERE kind = 'finished' "
                                   "GROUP BY job_id").fetchall())
    twice = sorted(j for j, r in runs.items() if r > 1)
    print(f"\n[{label}] {len(ids)} jobs in {result['seconds']:.1f} s, 3 SIGKILLs; recovery after each kill: "
          + ", ".join(f"{s:.1f} s" for s in recovery.values())
          + f" (window {WINDOW:.0f} s; default window {Settings().recovery_after:.0f} s + "
            f"{check_every(Settings().recovery_after):.0f} s check); jobs recovered: {len(recovered)}; "
            f"ran twice (at-least-once): {len(twice)}; PostgreSQL: {statuses}")
    assert statuses == {"finished": len(ids)}  # nothing failed, nothing left queued or processing
    assert all(r >= 1 for r in runs.values())  # every job ran
    assert set(twice) <= recovered  # a job that ran again was recovered, and its history says so
    assert all(finishes.get(j) == 1 for j in ids)  # one finish recorded per job
    assert all(s <= RECOVERY_LIMIT for s in recovery.values()), recovery
    conn = engine.connection
    assert all(conn.zcard(keys.rq_failed_key(q)) == 0 for q in engine.settings.queues)
    alive = {w.encode() for w in result["alive"]}
    assert conn.smembers(keys.WORKERS) == alive  # the dead are unregistered, the two live ones remain
    assert conn.smembers(keys.RQ_WORKERS) == {keys.rq_worker_key(w.decode()).encode() for w in alive}


def test_three_sigkills_during_1000_short_jobs(cluster: tuple[Cluster, Engine], database_url: str) -> None:
    c, engine = cluster
    rng = random.Random(10)
    result = run_with_kills(c, engine, [rng.uniform(0.002, 0.005) for _ in range(1000)], prefer_running=False)
    check(engine, database_url, result, "2-5 ms jobs")


def test_three_sigkills_with_ten_percent_long_jobs(cluster: tuple[Cluster, Engine], database_url: str) -> None:
    c, engine = cluster
    rng = random.Random(11)
    durations = [rng.uniform(1.0, 2.0) if i % 10 == 0 else rng.uniform(0.002, 0.005) for i in range(1000)]
    rng.shuffle(durations)
    result = run_with_kills(c, engine, durations, prefer_running=True)
    check(engine, database_url, result, "10% of 1-2 s jobs")
    with psycopg.connect(database_url) as pg:
        abandoned = pg.execute("SELECT count(*) FROM job_logs WHERE message LIKE 'abandoned: worker %%'").fetchone()
    assert abandoned is not None and abandoned[0] >= 1  # a long job was running at a kill: retried as abandoned
