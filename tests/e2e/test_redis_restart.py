"""Redis restarted without its data under load: SHUTDOWN NOSAVE of a private redis-server, a few
seconds without one, then an empty server on the same port, while two `jobtui worker` processes
run 1,000 jobs on all four lanes (a fifth of them delayed). The workers notice the reset and
reconcile it by themselves (`[worker] reconcile_every`); afterwards no job is lost, none that had
finished runs again, history flows again through the workers' own writers, the workers are
registered again, and `jobtui health` failed while the reset was unreconciled and came back.

Each run is counted in a file (tests.e2e.jobs.log_run), since Redis forgets.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobengine import Engine, JobSpec, keys
from tests.e2e.conftest import Cluster, RedisServer, running_cluster, wait_for

pytestmark = pytest.mark.slow

LANES = ("critical", "high", "normal", "low")
RECONCILE_EVERY = 2.0  #: the workers look for a reset this often (30 s by default)
DOWN = 3.0  #: seconds without a Redis


class HealthLog:
    """Samples `Engine.health()` in a thread: (seconds since start, verdict, reasons)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.samples: list[tuple[float, str, tuple[str, ...]]] = []
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            report = self.engine.health()
            self.samples.append((time.monotonic() - self._start, report.verdict, tuple(report.reasons)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def first(self, predicate) -> float | None:  # type: ignore[no-untyped-def]
        return next((at for at, verdict, reasons in self.samples if predicate(verdict, reasons)), None)


@pytest.fixture
def cluster(private_redis: RedisServer, database_url: str, tmp_path: Path) -> Iterator[tuple[Cluster, Engine]]:
    with running_cluster(private_redis.url(), database_url, tmp_path, 10.0,
                         worker=f"reconcile_every = {RECONCILE_EVERY}") as running:
        yield running


def _statuses(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as pg:
        return dict(pg.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())  # type: ignore[arg-type]


def unreconciled(verdict: str, reasons: tuple[str, ...]) -> bool:
    return verdict == "failing" and any("reconcile" in r for r in reasons)


def _runs(path: Path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def test_redis_restart_without_data_under_load_loses_no_job(cluster: tuple[Cluster, Engine],
                                                             private_redis: RedisServer, database_url: str,
                                                             tmp_path: Path) -> None:
    c, engine = cluster
    conn = engine.connection
    runs_file = tmp_path / "runs"
    workers = [c.start(), c.start()]
    wait_for(lambda: all(conn.exists(keys.worker_alive_key(w)) for w in workers)
             and engine.store.redis_epoch() is not None, 30, what="two workers and a recorded Redis epoch")

    rng = random.Random(12)
    specs = [JobSpec("tests.e2e.jobs:log_run", (str(runs_file), rng.uniform(0.005, 0.015)),
                     priority=LANES[i % 4], delay=rng.uniform(2.0, 12.0) if i % 5 == 0 else None)
             for i in range(1000)]
    ids = engine.dispatch_many(specs)
    with psycopg.connect(database_url, autocommit=True) as pg:
        # Stands for jobs dispatched over a minute before the crash: reconcile leaves younger ones
        # for a later round (their dispatch may still be on its way; tests/engine/test_reconcile.py).
        pg.execute("UPDATE jobs SET created_at = created_at - interval '5 minutes'")
    wait_for(lambda: len(_runs(runs_file)) >= 300, 60, 0.01, "300 jobs to run")

    with psycopg.connect(database_url) as pg:
        finished_before = {j for (j,) in pg.execute("SELECT id FROM jobs WHERE status = 'finished'").fetchall()}
    before = _statuses(database_url)
    health = HealthLog(engine)
    restart_at = time.monotonic()
    # As soon as the empty Redis answers, the test holds the reconcile lock for a moment (as a
    # reconcile still at work would): health must say failing then, whatever the timers' phase.
    private_redis.restart_empty(DOWN, first=lambda r: r.set(keys.RECONCILE_LOCK, "e2e", px=30_000))
    back_at = time.monotonic() - restart_at
    wait_for(lambda: health.first(unreconciled) is not None, 10, 0.05, "health to fail on the unreconciled reset")
    assert conn.delete(keys.RECONCILE_LOCK) == 1  # no worker reconciled under it: they can now

    wait_for(lambda: _statuses(database_url) == {"finished": len(ids)}, 180, 0.5,
             "every job finished in PostgreSQL, written by the workers' own history writers")
    settled_at = time.monotonic() - restart_at
    def registered() -> tuple[set[str], set[str]]:
        return ({m.decode() for m in conn.smembers(keys.WORKERS)},
                {m.decode() for m in conn.smembers(keys.RQ_WORKERS)})

    expected = (set(workers), {keys.rq_worker_key(w) for w in workers})
    try:
        wait_for(lambda: registered() == expected, 30, what="both workers registered again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {registered()} != {expected}") from None
    wait_for(lambda: health.samples and health.samples[-1][1] != "failing", 30, what="health to recover")
    health.stop()

    runs = _runs(runs_file)
    twice = {j for j in ids if runs[j] > 1}
    with psycopg.connect(database_url) as pg:
        restored = dict(pg.execute("SELECT substring(message from '\\(was (\\w+)\\)'), count(*) FROM job_logs "
                                   "WHERE message LIKE 'restored by reconcile%%' GROUP BY 1").fetchall())
        audits = pg.execute("SELECT count(*) FROM audit_log WHERE action = 'reconcile'").fetchone()
    failing_at = health.first(unreconciled)
    healed_at = next((at for at, verdict, _ in health.samples if failing_at is not None and at > failing_at
                      and verdict != "failing"), None)
    print(f"\n[redis restart] 1,000 jobs on {len(LANES)} lanes (200 delayed 2-12 s), two workers; at the restart "
          f"PostgreSQL held {before}; Redis down {DOWN:.0f} s, back after {back_at:.1f} s; health failing "
          f"(unreconciled reset) from {failing_at or 0:.1f} s to {healed_at or 0:.1f} s after the shutdown (the "
          f"test held the reconcile lock until it saw it), verdicts seen: {sorted({v for _, v, _ in health.samples})}; "
          f"restored by the "
          f"workers' reconcile: {restored}; ran twice (at-least-once, none finished before): {len(twice)}; "
          f"all 1,000 finished in PostgreSQL {settled_at:.1f} s after the shutdown; lost: "
          f"{sum(1 for j in ids if runs[j] == 0)}")

    assert all(runs[j] >= 1 for j in ids)  # nothing lost: every job ran
    assert not twice & finished_before  # a job PostgreSQL held as finished never ran again
    assert sum(restored.values()) >= 1 and audits is not None and audits[0] >= 1  # the workers reconciled
    assert failing_at is not None and healed_at is not None  # health failed on the reset, then came back
    assert any("Redis was reset: reconciled" in c.log(w) for w in workers)  # a worker did it by itself
    assert conn.get(keys.REDIS_EPOCH) is not None and engine.store.redis_epoch() == conn.get(keys.REDIS_EPOCH).decode()
    assert all(conn.llen(keys.rq_queue_key(q)) == 0 and conn.zcard(keys.rq_scheduled_key(q)) == 0
               for q in engine.settings.queues)
