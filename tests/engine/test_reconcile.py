"""Redis data loss: dispatch keeps what re-creates a job; reconcile puts lost jobs back once."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from rq import Queue, SimpleWorker
from rq.job import Job

from jobengine import Engine, JobSpec, keys
from jobengine.config import Settings
from jobengine.dispatch import rq_job_hash
from jobengine.history import add_event
from jobengine.models import JobEvent, NewJob
from jobengine.reconcile import Reconciler, ReconcileReport
from jobengine.store.postgres import PostgresStore
from jobengine.types import EventKind, JobStatus, Priority
from jobtui.cli import cli as cli_main
from tests.engine.conftest import ZERO_DELAY_LANES
from tests.engine.helpers import rows


def _as_redis(fields: dict[str, object]) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}


def test_dispatch_keeps_payload_and_options_that_rebuild_its_job_hash(engine: Engine, database_url: str) -> None:
    ids = engine.dispatch_many([JobSpec("tests.engine.jobs:add", (1, 2), type="math", priority="critical"),
                                JobSpec("tests.engine.jobs:add", (3,), {"b": 4}, priority="low")])
    kept = {r[0]: r[1:] for r in rows(database_url, "SELECT id, payload, options, status FROM jobs")}
    assert set(kept) == set(ids)
    for job_id in ids:
        payload, options, status = kept[job_id]
        raw = engine.connection.hgetall(f"rq:job:{job_id}")
        enqueued = raw.get(b"enqueued_at")
        rebuilt = rq_job_hash(bytes(payload), options, raw[b"origin"].decode(), JobStatus(status),
                              raw[b"created_at"].decode(), enqueued.decode() if enqueued else None)
        assert _as_redis(rebuilt) == raw  # the row alone rebuilds the hash dispatch wrote
    options = kept[ids[0]][1]
    assert options["meta"] == {"type": "math", "priority": "critical"}
    assert options["timeout"] == engine.settings.job_timeout
    assert pickle.loads(engine.connection.hget(f"rq:job:{ids[0]}", "meta")) == options["meta"]
    assert kept[ids[1]][2] == "scheduled"


# ---- fixtures: a private Redis (tests/conftest.py) this module may flush --------------------

@pytest.fixture
def lost_engine(private_redis: str, database_url: str) -> Iterator[Engine]:
    """Lanes without delays (jobs ask for their own) on the private Redis."""
    settings = Settings.load(env={}, redis_url=private_redis, database_url=database_url,
                             lanes=dict(ZERO_DELAY_LANES))
    eng = Engine(settings)
    yield eng
    eng.close()


def _reconciler(engine: Engine, **kw: object) -> Reconciler:
    return Reconciler(engine.connection, engine.store, engine.settings, **{"grace": 0.0, **kw})  # type: ignore[arg-type]


def _mark_processing(engine: Engine, job_ids: list[str], attempt: int) -> None:
    """PostgreSQL holds these jobs as running attempt `attempt` (their worker's events are in)."""
    now = datetime.now(UTC)
    engine.store.apply_events([JobEvent(event_id=f"0-{n + 1}", kind=EventKind.STARTED, job_id=job_id, at=now,
                                        queue="critical", attempt=attempt, worker="lost-worker")
                               for n, job_id in enumerate(job_ids)])


def _status_counts(database_url: str) -> dict[str, int]:
    return dict(rows(database_url, "SELECT status, count(*) FROM jobs GROUP BY status"))


def _queue(conn: redis.Redis, name: str) -> list[str]:
    return [j.decode() for j in conn.lrange(f"rq:queue:{name}", 0, -1)]


def _scheduled(conn: redis.Redis, name: str) -> list[str]:
    return [j.decode() for j in conn.zrange(f"rq:scheduled:{name}", 0, -1)]


def _dispatch_mix(engine: Engine) -> dict[str, list[str]]:
    """Jobs on all four lanes: queued, delayed an hour, delayed a moment (due by reconcile time),
    running (PostgreSQL says processing), and one a plain RQ client left without a payload."""
    add = "tests.engine.jobs:add"
    made = {
        "queued": engine.dispatch_many([JobSpec(add, (n, 1), priority=p) for n, p in
                                        enumerate(["critical", "high", "normal", "low"] * 3)]),
        "later": engine.dispatch_many([JobSpec(add, (n, 2), priority=p, delay=3600) for n, p in
                                       enumerate(["high", "normal", "low"] * 2)]),
        "soon": engine.dispatch_many([JobSpec(add, (n, 3), priority="normal", delay=0.5) for n in range(3)]),
        "running": engine.dispatch_many([JobSpec(add, (n, 4), priority="critical") for n in range(2)]),
    }
    _mark_processing(engine, made["running"], attempt=2)
    engine.store.insert_jobs([NewJob(id="plain-rq-job", type="add", queue="default", priority=Priority.NORMAL,
                                     status=JobStatus.QUEUED, func="tests.engine.jobs.add", args="1, 2",
                                     created_at=datetime.now(UTC) - timedelta(minutes=5))])
    return made


# ---- the reset, the reconcile, the run --------------------------------------------------------------

def test_redis_reset_is_detected_reconciled_once_and_the_jobs_run(lost_engine: Engine, database_url: str) -> None:
    engine, conn = lost_engine, lost_engine.connection
    reconciler = _reconciler(engine)
    assert not reconciler.detect_reset().reset  # first sight: the epoch is recorded
    epoch = engine.store.redis_epoch()
    assert epoch is not None and conn.get(keys.REDIS_EPOCH).decode() == epoch
    made = _dispatch_mix(engine)
    before = {q: (_queue(conn, q), _scheduled(conn, q)) for q in engine.settings.queues}
    hashes = {j: conn.hgetall(f"rq:job:{j}") for j in made["queued"]}
    time.sleep(0.6)  # the `soon` jobs fall due while Redis is gone

    conn.flushall()
    lost = reconciler.detect_reset()
    assert lost.reset and lost.redis_epoch is None and lost.recorded_epoch == epoch

    report = reconciler.run()
    assert report.restored == {"queued": 12, "scheduled": 9, "processing": 2}
    assert (report.missing, report.not_restorable, report.already_restored) == (24, 1, 0)
    assert report.examined == 24 and report.reset_cleared and not report.stale
    # Each job once, where it was (due ones and running ones pushed now), the hash as dispatch wrote it.
    assert sorted(_queue(conn, "critical")) == sorted(before["critical"][0])
    assert set(made["running"]) <= set(_queue(conn, "critical"))
    assert sorted(_queue(conn, "high")) == sorted(before["high"][0])
    assert sorted(_queue(conn, "default")) == sorted(before["default"][0] + made["soon"])
    assert sorted(_queue(conn, "low")) == sorted(before["low"][0])
    for q in ("high", "default", "low"):
        assert sorted(_scheduled(conn, q)) == sorted(set(before[q][1]) - set(made["soon"]))
    for job_id, original in hashes.items():
        restored = conn.hgetall(f"rq:job:{job_id}")
        for stamp in (b"created_at", b"enqueued_at"):  # RQ's text stamps: same instant, new ones
            assert restored.pop(stamp) and original.pop(stamp)
        assert restored == original
    assert {conn.hget(f"rq:job:{j}", "number_of_retries") for j in made["running"]} == {b"1"}  # same attempt again
    audits = [a for a in engine.store.audit_entries() if a["action"] == "reconcile"]
    assert len(audits) == 1 and "restored=processing:2,queued:12,scheduled:9" in audits[0]["detail"]
    assert not reconciler.detect_reset().reset
    assert engine.store.redis_epoch() == conn.get(keys.REDIS_EPOCH).decode() != epoch

    again = reconciler.run()  # idempotent
    assert again.restored_total == 0 and again.missing == 1 and again.not_restorable == 1
    assert len(_queue(conn, "critical")) == 3 + 2 and len(_scheduled(conn, "low")) == 2

    engine.worker().work(burst=True, logging_level="WARNING")
    engine.flush_history()
    done = rows(database_url, "SELECT id, status, attempts FROM jobs WHERE id <> 'plain-rq-job'")
    runnable = set(made["queued"] + made["soon"] + made["running"])
    assert {s for j, s, _ in done if j in runnable} == {"finished"}
    assert {s for j, s, _ in done if j in made["later"]} == {"scheduled"}
    assert {a for j, _, a in done if j in made["running"]} == {2}  # the lost run ran again as attempt 2
    assert _status_counts(database_url) == {"finished": 17, "scheduled": 6, "queued": 1}
    logs = rows(database_url, "SELECT count(*) FROM job_logs WHERE message LIKE 'restored by reconcile%%'")
    assert logs == [(23,)]
    assert not reconciler.detect_reset().reset


def test_dry_run_writes_nothing(lost_engine: Engine, database_url: str) -> None:
    engine, conn = lost_engine, lost_engine.connection
    reconciler = _reconciler(engine)
    reconciler.detect_reset()
    made = _dispatch_mix(engine)
    conn.flushall()
    audits = len(engine.store.audit_entries())

    report = reconciler.run(dry_run=True)
    assert report.dry_run and report.restored == {"queued": 12, "scheduled": 9, "processing": 2}
    assert not report.reset_cleared and report.not_restorable == 1
    assert conn.dbsize() == 0  # not even an epoch
    assert len(engine.store.audit_entries()) == audits
    assert reconciler.detect_reset().reset
    found = reconciler.find()
    assert found.examined == 24 and not found.stale
    assert {x.job_id for x in found.lost if x.reason == "restorable"} == {j for ids in made.values() for j in ids}
    assert [x.job_id for x in found.lost if x.reason == "no_payload"] == ["plain-rq-job"]
    assert conn.dbsize() == 0 and _status_counts(database_url) == {"queued": 13, "scheduled": 9, "processing": 2}


def test_two_concurrent_reconcilers_restore_each_job_once(lost_engine: Engine, database_url: str) -> None:
    engine, conn = lost_engine, lost_engine.connection
    _reconciler(engine).detect_reset()
    ids = engine.dispatch_many([JobSpec("tests.engine.jobs:noop", priority=p)
                                for p in ["critical", "high", "normal", "low"] * 60])
    conn.flushall()
    start = threading.Barrier(2)
    reports: list[ReconcileReport] = []

    def reconcile() -> None:
        with redis.Redis.from_url(engine.settings.redis_url or "") as own, \
                PostgresStore(database_url) as store:
            reconciler = Reconciler(own, store, engine.settings, page_size=7, grace=0.0)
            start.wait()
            reports.append(reconciler.run())

    threads = [threading.Thread(target=reconcile) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 2
    assert sum(r.restored_total for r in reports) == len(ids)
    assert all(r.restored_total + r.already_restored == r.missing for r in reports)
    pushed = [j for q in engine.settings.queues for j in _queue(conn, q)]
    assert sorted(pushed) == sorted(ids)  # each exactly once
    assert not _reconciler(engine).detect_reset().reset


def test_jobs_dispatched_moments_ago_wait_and_keep_the_reset_open(lost_engine: Engine) -> None:
    engine, conn = lost_engine, lost_engine.connection
    reconciler = _reconciler(engine, grace=60.0)
    reconciler.detect_reset()
    engine.dispatch_many([JobSpec("tests.engine.jobs:noop", priority="critical") for _ in range(3)])
    conn.flushall()
    report = reconciler.run()
    assert (report.recent, report.restored_total, report.reset_cleared) == (3, 0, False)
    assert conn.llen("rq:queue:critical") == 0 and reconciler.detect_reset().reset
    assert _reconciler(engine).run().restored == {"queued": 3}  # after the grace
    assert not reconciler.detect_reset().reset


def test_run_if_reset_runs_only_after_a_reset_and_under_the_lock(lost_engine: Engine) -> None:
    engine, conn = lost_engine, lost_engine.connection
    reconciler = _reconciler(engine)
    assert reconciler.run_if_reset() is None  # bootstraps the epoch: nothing to do
    engine.dispatch("tests.engine.jobs:noop", priority="critical")
    conn.flushall()
    conn.set(keys.RECONCILE_LOCK, "someone else", px=60_000)
    assert reconciler.run_if_reset() is None and conn.llen("rq:queue:critical") == 0
    conn.delete(keys.RECONCILE_LOCK)
    report = reconciler.run_if_reset()
    assert report is not None and report.restored == {"queued": 1}
    assert not conn.exists(keys.RECONCILE_LOCK) and reconciler.run_if_reset() is None


# ---- on the shared Redis (no flush): what reconcile leaves alone -------------------------------------

def test_jobs_redis_still_has_are_left_alone_and_terminal_ones_are_stale(engine: Engine) -> None:
    ids = engine.dispatch_many([JobSpec("tests.engine.jobs:noop", priority="critical") for _ in range(3)])
    engine.connection.hset(f"rq:job:{ids[0]}", "status", "finished")  # its events never reached PostgreSQL
    assert _reconciler(engine).find().ended[0].outcome == "finished"
    report = _reconciler(engine).run()
    assert (report.examined, report.missing, report.restored_total) == (3, 0, 0)
    assert report.stale == (ids[0],) and report.recorded == {"finished": 1}
    assert engine.connection.llen("rq:queue:critical") == 3


def test_a_job_canceled_through_rqs_api_is_recorded_canceled_once(engine: Engine, redis_url: str,
                                                                  database_url: str) -> None:
    """Issue #12: rq-dashboard cancels through RQ's API (no jobtui event); reconcile records it.
    A job deleted through RQ's API looks lost: reconcile re-creates it (README)."""
    canceled, deleted = engine.dispatch_many([JobSpec("tests.engine.jobs:noop", priority="critical")
                                              for _ in range(2)])
    engine.flush_history()
    Job.fetch(canceled, connection=engine.connection).cancel()
    Job.fetch(deleted, connection=engine.connection).delete()
    assert _reconciler(engine, grace=3600).run(dry_run=True).recorded == {}  # canceled moments ago (its score)
    assert _reconciler(engine).run(dry_run=True).recorded == {"canceled": 1}
    assert engine.connection.xlen(keys.EVENTS_STREAM) == 0  # a dry run records nothing
    first, second = _reconciler(engine), _reconciler(engine)  # two at once: the end is written once
    ended = first.find().ended
    assert first._record_ends(ended) == list(ended) and second._record_ends(ended) == []
    [(entry, _)] = engine.connection.xrange(keys.EVENTS_STREAM)
    engine.connection.xdel(keys.EVENTS_STREAM, entry)  # back to before the two
    engine.connection.delete(keys.RECONCILE_RECORDED)
    report = _reconciler(engine).run()
    assert report.stale == (canceled,) and report.recorded == {"canceled": 1}
    assert report.restored == {"queued": 1}  # the deleted one
    again = _reconciler(engine).run()  # before the writer applied the event: it is on its way
    assert again.stale == (canceled,) and again.recorded == {}
    engine.flush_history()
    assert rows(database_url, "SELECT status FROM jobs WHERE id = %s", canceled) == [("canceled",)]
    assert rows(database_url, "SELECT status FROM jobs WHERE id = %s", deleted) == [("queued",)]
    assert rows(database_url, "SELECT message FROM job_logs WHERE job_id = %s", canceled) == [
        ("recorded by reconcile: canceled through RQ (not by jobtui)",)]  # once
    last = _reconciler(engine).run()
    assert (last.examined, last.stale, last.recorded) == (1, (), {})
    cli = CliRunner().invoke(cli_main, ["--redis-url", redis_url, "--database-url", database_url,
                                        "reconcile", "--json"])
    assert json.loads(cli.stdout)["recorded"] == {} and json.loads(cli.stdout)["recorded_total"] == 0


def test_a_plain_rq_workers_outcomes_are_recorded_with_rqs_traceback(engine: Engine, database_url: str) -> None:
    """Jobs run by RQ's own worker (no jobtui hooks: no events) end in PostgreSQL as RQ says."""
    ok, bad = engine.dispatch_many([JobSpec("tests.engine.jobs:noop", priority="critical"),
                                    JobSpec("tests.engine.jobs:broken", (7,), priority="critical")])
    engine.flush_history()
    SimpleWorker([Queue("critical", connection=engine.connection)], connection=engine.connection).work(
        burst=True, logging_level="WARNING")
    assert engine.connection.xlen(keys.EVENTS_STREAM) == 0
    young = _reconciler(engine, grace=3600).run()  # ended moments ago (RQ's ended_at): left for later
    assert young.stale and young.recorded == {}
    assert _reconciler(engine).run().recorded == {"finished": 1, "failed": 1}
    engine.flush_history()
    assert dict(rows(database_url, "SELECT id, status FROM jobs")) == {ok: "finished", bad: "failed"}
    assert rows(database_url, "SELECT error_class, error_message FROM failed_jobs WHERE job_id = %s", bad) == [
        ("ValueError", "bad value 7")]
    assert _reconciler(engine).run().examined == 0


def test_a_job_whose_history_is_pending_is_not_restored(engine: Engine, database_url: str) -> None:
    job_id = engine.dispatch("tests.engine.jobs:noop", priority="critical")
    # It ran and finished with result_ttl 0 (RQ deletes the hash); the event waits in the stream.
    engine.connection.delete(f"rq:job:{job_id}")
    engine.connection.lrem("rq:queue:critical", 0, job_id)
    with engine.connection.pipeline() as pipe:
        add_event(pipe, EventKind.FINISHED, job_id, "critical", duration=0.001)
        pipe.execute()
    report = _reconciler(engine).run()
    assert (report.pending_history, report.restored_total, report.reset_cleared) == (1, 0, False)
    assert engine.connection.llen("rq:queue:critical") == 0
    engine.flush_history()
    assert _reconciler(engine).run().examined == 0
    assert rows(database_url, "SELECT status FROM jobs") == [("finished",)]


def test_big_binary_arguments_come_back_byte_for_byte_and_rqs_own_worker_runs_them(
        lost_engine: Engine, database_url: str) -> None:
    engine, conn = lost_engine, lost_engine.connection
    blob = bytes(range(256)) * 400 + b"\x00\xff"
    job_id = engine.dispatch("tests.engine.jobs:add", blob, b"!", priority="critical")
    data = conn.hget(f"rq:job:{job_id}", "data")
    conn.flushall()
    assert engine.reconciler(grace=0).run().restored == {"queued": 1}
    assert conn.hget(f"rq:job:{job_id}", "data") == data
    assert Job.fetch(job_id, connection=conn).args == (blob, b"!")
    engine.worker(classic=True).work(burst=True, logging_level="WARNING")  # RQ's SimpleWorker underneath
    assert Job.fetch(job_id, connection=conn).return_value() == blob + b"!"
    engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs") == [("finished", 1)]


def test_the_migration_runner_applies_a_migration_numbered_below_one_already_applied(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrations are applied by name: 005 arriving after 006 (two branches) is applied then."""
    from jobengine.store import postgres

    store = PostgresStore(database_url)
    applied = postgres.migrations()
    assert "006_reconcile" in dict(applied) and store.migrate() == []
    late = ("005_arrived_late", "CREATE TABLE arrived_late (id int)")
    monkeypatch.setattr(postgres, "migrations", lambda: tuple(sorted([*applied, late])))
    assert store.migrate() == ["005_arrived_late"]
    assert store.migrate() == []
    assert rows(database_url, "SELECT count(*) FROM arrived_late") == [(0,)]
    store.close()


def test_in_flight_pages_walk_every_job_once_through_the_index(database_url: str) -> None:
    """Keyset pages per priority over jobs_in_flight_idx: ties on created_at (one dispatch_many)
    are broken by id, so no job is skipped or seen twice, and no page sorts."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute("""
            INSERT INTO jobs (id, type, queue, priority, status, created_at, updated_at)
            SELECT md5(n::text), 'report', 'default', CASE WHEN n % 5 = 4 THEN NULL ELSE n % 5 END,
                   CASE WHEN n % 10 < 2 THEN 'queued' WHEN n % 10 < 4 THEN 'scheduled'
                        WHEN n % 10 < 6 THEN 'processing' ELSE 'finished' END,
                   timestamptz '2026-01-01' + (n / 700) * interval '1 second', now()
            FROM generate_series(1, 60000) AS n""")
        conn.execute("ANALYZE jobs")
        in_flight = {r[0] for r in conn.execute("SELECT id FROM jobs WHERE status <> 'finished'")}
    store = PostgresStore(database_url)
    seen: list[str] = []
    for lane in (*Priority, None):
        after = None
        while page := store.in_flight_page(lane, after, limit=499):
            seen += [job_id for job_id, _, _ in page]
            after = (page[-1][2], page[-1][0])
    assert len(seen) == len(set(seen)) == len(in_flight) == store.in_flight_count() == 36000
    assert set(seen) == in_flight
    for name, priority in (("reconcile_page", 2), ("reconcile_page_unranked", None)):
        plan = store.explain(name, {"priority": priority, "after_at": datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
                                    "after_id": "8", "limit": 500})
        nodes = _nodes(plan)
        assert ("Index Scan", "jobs_in_flight_idx") in nodes and not any(n == "Sort" for n, _ in nodes), nodes
    store.close()


def _nodes(plan: dict[str, object]) -> list[tuple[object, object]]:
    found = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found += _nodes(child)
    return found


def test_health_fails_after_a_reset_until_jobtui_reconcile_restores_the_jobs(lost_engine: Engine,
                                                                           database_url: str) -> None:
    engine, conn = lost_engine, lost_engine.connection
    engine.worker()  # a deployment with a worker has its Redis epoch recorded
    ids = engine.dispatch_many([JobSpec("jobengine.demo:noop", (i,)) for i in range(5)])
    assert engine.health().verdict == "warning"  # jobs wait and no worker runs: nothing else
    with engine.store._pool.connection() as pg:  # older than reconcile's 60 s grace for fresh dispatches
        pg.execute("UPDATE jobs SET created_at = created_at - interval '5 minutes'")
    conn.flushall()
    report = engine.health()
    assert report.verdict == "failing" and any("reconcile" in r for r in report.reasons)
    assert engine.monitor.snapshot(shared=False).health.verdict == "failing"

    cli = [sys.executable, "-m", "jobtui.cli", "--redis-url", engine.settings.redis_url or "",
           "--database-url", database_url]
    env = {**os.environ, "JOBENGINE_CONFIG": ""}
    dry = subprocess.run([*cli, "reconcile", "--dry-run", "--json"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["restored"] == {"queued": 5} and conn.llen("rq:queue:default") == 0

    done = subprocess.run([*cli, "reconcile"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "restored 5 job(s)" in done.stdout
    assert sorted(_queue(conn, "default")) == sorted(ids)
    after = engine.health()
    assert after.verdict == "warning" and not any("reconcile" in r for r in after.reasons)


def test_read_only_refuses_an_operators_reconcile_but_not_the_workers_own(lost_engine: Engine) -> None:
    from jobengine.errors import OperationRefused

    lost_engine.worker()
    lost_engine.connection.flushall()
    read_only = Engine(replace(lost_engine.settings, read_only=True))
    try:
        with pytest.raises(OperationRefused, match="reconcile refused"):
            read_only.reconciler().run()
        assert read_only.reconciler().run(dry_run=True).dry_run  # counting is not a mutation
        assert read_only.reconciler(grace=0.0).run_if_reset() is not None  # what workers call after a reset
        assert not read_only.reconciler().detect_reset().reset
    finally:
        read_only.close()


def test_a_running_jobtui_worker_reconciles_a_reset_by_itself(lost_engine: Engine, database_url: str,
                                                               tmp_path: Path) -> None:
    engine, conn = lost_engine, lost_engine.connection
    config = tmp_path / "jobtui.toml"
    config.write_text("[worker]\nreconcile_every = 0.5\n")
    ids = engine.dispatch_many([JobSpec("jobengine.demo:noop", delay=3600, priority="low") for _ in range(4)])
    with engine.store._pool.connection() as pg:  # older than reconcile's 60 s grace for fresh dispatches
        pg.execute("UPDATE jobs SET created_at = created_at - interval '5 minutes'")
    worker = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--config", str(config), "--redis-url",
                               engine.settings.redis_url or "", "--database-url", database_url, "worker"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while engine.store.redis_epoch() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the worker records the epoch when it starts
        conn.flushall()
        assert engine.health().verdict == "failing"
        while sorted(_scheduled(conn, "low")) != sorted(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(_scheduled(conn, "low")) == sorted(ids)

        def reconcile_pending() -> bool:
            return any("reconcile" in r for r in engine.health().reasons)

        while reconcile_pending() and time.monotonic() < deadline:  # the epoch is recorded after the last page
            time.sleep(0.2)
        assert not reconcile_pending()
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "Redis was reset: reconciled" in err
