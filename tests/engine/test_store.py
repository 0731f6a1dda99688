"""PostgresStore against a real PostgreSQL: schema, event application, read queries, plans, pruning."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobengine.errors import JobNotFound, StoreUnavailable
from jobengine.models import JobEvent, NewJob, failure_fingerprint
from jobengine.store.filters import query_params
from jobengine.store.postgres import PostgresStore, event_message, prefix_bounds
from jobengine.store.sqlfile import migrations, parse_sections, queries
from jobengine.types import EventKind, JobStatus, Priority
from tests.engine.helpers import wait_for_a_lock_wait

T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(database_url) as s:
        yield s


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with no tables at all."""
    base = os.environ.get("JOBTUI_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
    name = f"jobtui_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def count(url: str, table: str) -> int:
    return int(sql(url, f"SELECT count(*) FROM {table}")[0][0])


def new_job(job_id: str, at: datetime = T0, priority: Priority = Priority.NORMAL,
            status: JobStatus = JobStatus.QUEUED, job_type: str = "report") -> NewJob:
    return NewJob(id=job_id, type=job_type, queue="default", priority=priority, status=status,
                  func="app.tasks.report", args="(1,)", created_at=at)


class Events:
    """Builds events with increasing stream ids."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, kind: EventKind, job_id: str, at: datetime, **details: Any) -> JobEvent:
        self.n += 1
        return JobEvent(event_id=f"{1700000000000 + self.n}-0", kind=kind, job_id=job_id, at=at,
                        queue=details.pop("queue", "default"), **details)


def fail(ev: Events, job_id: str, at: datetime, error_class: str = "ValueError",
         message: str = "bad value 1", **details: Any) -> JobEvent:
    return ev(EventKind.FAILED, job_id, at, error_class=error_class, error_message=message,
              traceback="Traceback ...", attempt=1, duration=0.5, **details)


def lifecycle(ev: Events, job_id: str = "job-1") -> list[JobEvent]:
    s = timedelta(seconds=1)
    return [
        ev(EventKind.QUEUED, job_id, T0, type="report", priority=Priority.HIGH, func="app.tasks.report",
           args="(1,)"),
        ev(EventKind.STARTED, job_id, T0 + s, attempt=1, worker="w1"),
        ev(EventKind.RETRY, job_id, T0 + 2 * s, attempt=2, delay=8.0, error_class="TemporaryError",
           error_message="timeout"),
        ev(EventKind.STARTED, job_id, T0 + 10 * s, attempt=2, worker="w2"),
        ev(EventKind.FAILED, job_id, T0 + 12 * s, attempt=2, duration=2.0, error_class="ValueError",
           error_message="order 42 is invalid", traceback="Traceback (most recent call last): ..."),
    ]


# ---- sql files and schema ----------------------------------------------------------------------

def test_sql_sections_are_split_by_name_and_duplicates_rejected() -> None:
    parsed = parse_sections("-- header\n-- name: a\nSELECT 1;\n\n-- name: b\n-- note\nSELECT 2\n")
    assert parsed == {"a": "SELECT 1", "b": "-- note\nSELECT 2"}
    with pytest.raises(ValueError, match="twice"):
        parse_sections("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    assert {"apply_event", "active_jobs", "failed_page", "prune_jobs_batch"} <= set(queries())
    assert [name for name, _ in migrations()][0] == "001_initial"


def test_migrate_applies_each_migration_once(empty_database_url: str, database_url: str) -> None:
    with PostgresStore(empty_database_url) as s:
        assert s.migrate() == [name for name, _ in migrations()]
        assert s.migrate() == []
    tables = {r[0] for r in sql(empty_database_url, "SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert {"jobs", "job_logs", "failed_jobs", "audit_log", "schema_migrations"} <= tables
    with PostgresStore(database_url) as s:  # the fixture's database was migrated by the session
        assert s.migrate() == []


def test_concurrent_migrations_apply_once(empty_database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with PostgresStore(empty_database_url) as s:
                results.append(s.migrate())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrations())]
    assert count(empty_database_url, "schema_migrations") == len(migrations())


# ---- writes ------------------------------------------------------------------------------------

def test_insert_jobs_then_read_them_back(store: PostgresStore, database_url: str) -> None:
    rows = [new_job(f"id-{n:04d}", T0 + timedelta(seconds=n)) for n in range(300)]
    store.insert_jobs(rows)
    store.insert_jobs([new_job("id-0000", T0, job_type="changed")])  # existing ids are left alone
    assert count(database_url, "jobs") == 300
    detail = store.get_job("id-0007")
    assert detail is not None
    rec = detail.record
    assert (rec.type, rec.queue, rec.priority, rec.status, rec.attempts, rec.func, rec.args) == (
        "report", "default", Priority.NORMAL, JobStatus.QUEUED, 0, "app.tasks.report", "(1,)")
    assert rec.created_at == T0 + timedelta(seconds=7)
    assert store.get_job("id-0000").record.type == "report"  # type: ignore[union-attr]
    assert sql(database_url, "SELECT count(*) FROM jobs WHERE updated_at <> created_at")[0][0] == 0
    assert [r.id for r in store.get_jobs(["id-0002", "nope", "id-0001"])] == ["id-0002", "id-0001"]
    assert store.job_status("id-0003") is JobStatus.QUEUED
    assert store.job_status("nope") is None


def test_a_dispatch_row_after_the_workers_history_fills_it_in(store: PostgresStore, database_url: str) -> None:
    """Dispatch enqueues before it writes its row: when the worker's events won the race, the
    row keeps their status and times and takes the dispatch's function, arguments and payload."""
    ev, s = Events(), timedelta(seconds=1)
    store.apply_events([ev(EventKind.STARTED, "raced", T0 + s, type="report", attempt=1, worker="w1"),
                        ev(EventKind.FINISHED, "raced", T0 + 2 * s, attempt=1, duration=1.0)])
    late = replace(new_job("raced", T0, priority=Priority.HIGH), payload=b"data", options={"timeout": 9})
    store.insert_jobs([late])
    assert sql(database_url, "SELECT status, type, func, args, priority, created_at, payload, options->>'timeout', "
               "updated_at FROM jobs WHERE id='raced'") == [
        ("finished", "report", "app.tasks.report", "(1,)", Priority.HIGH.rank, T0, b"data", "9", T0 + 2 * s)]
    store.insert_jobs([replace(late, payload=b"other", args="(2,)")])  # a dispatched row stays as it is
    assert sql(database_url, "SELECT args, payload FROM jobs WHERE id='raced'") == [("(1,)", b"data")]


def test_a_dispatch_racing_the_history_of_its_jobs_does_not_deadlock(store: PostgresStore,
                                                                    database_url: str) -> None:
    """A history batch makes rows for jobs whose dispatch row is not written yet, locking them in
    id order; the dispatch writes its rows in that order too (whatever order it got them in), so it
    queues behind the batch instead of holding a job the batch needs next (a deadlock costs the
    victim deadlock_timeout, 1 s: the history-lag spikes of bench/history_lag before this)."""
    errors: list[BaseException] = []

    def dispatch_b_then_a() -> None:
        try:
            store.insert_jobs([new_job("job-b", T0), new_job("job-a", T0)])
        except BaseException as exc:  # returned to the test
            errors.append(exc)

    placeholder = ("INSERT INTO jobs (id, type, queue, status, attempts, created_at, updated_at) "
                   "VALUES (%s, 'unknown', 'default', 'queued', 0, 'infinity', '-infinity') ON CONFLICT DO NOTHING")
    with psycopg.connect(database_url) as batch:
        batch.execute("SET deadlock_timeout = '200ms'")
        batch.execute(placeholder, ("job-a",))  # the batch holds job-a ...
        dispatch = threading.Thread(target=dispatch_b_then_a)
        dispatch.start()
        wait_for_a_lock_wait(batch)  # ... until the dispatch waits for it
        batch.execute(placeholder, ("job-b",))  # ... and goes on to job-b: free, the dispatch took none yet
        batch.commit()
        dispatch.join(timeout=30)
    assert errors == [] and store.transient_retries == 0
    assert sql(database_url, "SELECT id, type FROM jobs ORDER BY id") == [("job-a", "report"), ("job-b", "report")]


def test_full_lifecycle_is_recorded(store: PostgresStore, database_url: str) -> None:
    ev = Events()
    store.apply_events(lifecycle(ev))
    detail = store.get_job("job-1")
    assert detail is not None
    rec = detail.record
    assert rec.status is JobStatus.FAILED
    assert rec.attempts == 2
    assert (rec.type, rec.priority, rec.func, rec.worker, rec.duration) == (
        "report", Priority.HIGH, "app.tasks.report", "w2", 2.0)
    assert rec.started_at == T0 + timedelta(seconds=10)
    assert rec.failed_at == rec.finished_at == T0 + timedelta(seconds=12)
    assert sql(database_url, "SELECT scheduled_for FROM jobs")[0][0] == T0 + timedelta(seconds=10)
    assert [(e.kind, e.level) for e in detail.logs] == [
        ("queued", "info"), ("started", "info"), ("retry", "warning"), ("started", "info"),
        ("failed", "error")]
    assert detail.logs[2].message == "retry 2 in 8.0s after TemporaryError: timeout"
    assert (detail.logs[2].attempt, detail.logs[2].delay) == (2, 8.0)
    assert detail.failure is not None
    assert detail.failure.fingerprint == failure_fingerprint("ValueError", "order 42 is invalid")
    assert (detail.failure.type, detail.failure.attempts, detail.failure.error_class) == (
        "report", 2, "ValueError")
    assert count(database_url, "job_logs") == 5
    assert count(database_url, "failed_jobs") == 1


def test_applying_a_batch_twice_changes_nothing(store: PostgresStore, database_url: str) -> None:
    batch = lifecycle(Events())
    store.apply_events(batch)
    snapshot = sql(database_url, "SELECT xmin::text, * FROM jobs")
    store.apply_events(batch)
    store.apply_events(list(reversed(batch)))
    assert sql(database_url, "SELECT xmin::text, * FROM jobs") == snapshot  # not even rewritten
    assert count(database_url, "job_logs") == 5
    assert count(database_url, "failed_jobs") == 1


def test_failed_counter_is_only_written_by_failures(store: PostgresStore, database_url: str) -> None:
    ev = Events()
    version = "SELECT xmin::text, value FROM history_counters WHERE name = 'failed_jobs'"
    before = sql(database_url, version)
    store.apply_events([ev(EventKind.QUEUED, f"q{n}", T0) for n in range(50)])
    assert sql(database_url, version) == before  # no row version per event: no lock, no bloat
    store.apply_events([fail(ev, f"q{n}", T0 + timedelta(seconds=1)) for n in range(3)])
    assert sql(database_url, version)[0][1] == 3 == store.failed_total() == count(database_url, "failed_jobs")


def open_failures(database_url: str) -> int:
    return sql(database_url, "SELECT count(*) FROM failed_jobs WHERE retried_at IS NULL")[0][0]


def test_the_failed_counter_follows_retries_reopens_and_deletes(store: PostgresStore, database_url: str) -> None:
    ev = Events()
    s = timedelta(seconds=1)
    store.apply_events([fail(ev, f"j{n}", T0 + n * s) for n in range(6)])
    assert store.failed_total() == 6 == open_failures(database_url)
    assert store.resolve_failures(["j0", "j1", "nobody"], T0 + 10 * s) == 2
    assert store.resolve_failures(["j0", "j1"], T0 + 20 * s) == 0  # idempotent: first retried_at kept
    assert sql(database_url, "SELECT retried_at FROM failed_jobs WHERE job_id = 'j0'") == [(T0 + 10 * s,)]
    assert store.resolve_failures(["j5"], T0 + 2 * s) == 0  # j5 failed after that retry: stays open
    assert store.failed_total() == 4 == open_failures(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE failed_jobs SET retried_at = NULL WHERE job_id = 'j0'")  # reopened by hand
        conn.execute("UPDATE failed_jobs SET error_message = 'x'")  # other columns: no change
        conn.execute("DELETE FROM failed_jobs WHERE job_id IN ('j1', 'j2')")  # one retried, one open
    assert store.failed_total() == 4 == open_failures(database_url)
    store.prune(older_than=T0 + 100 * s)  # deletes retried and open rows alike
    assert store.failed_total() == 0 == count(database_url, "failed_jobs")


def test_failed_lists_groups_and_counts_leave_out_retried_failures(store: PostgresStore) -> None:
    ev = Events()
    now = datetime.now(UTC)
    store.apply_events([fail(ev, f"j{n}", now - timedelta(minutes=10 - n)) for n in range(3)])
    store.resolve_failures(["j0"], now)
    assert [f.job_id for f in store.failed_jobs()] == ["j2", "j1"]
    assert store.failed_total() == 2 == store.failed_total(search="bad")
    assert [g.count for g in store.failure_groups()] == [2]
    fingerprint = store.failure_groups()[0].fingerprint
    assert sorted(store.failed_job_ids_in_group(fingerprint)) == ["j1", "j2"]
    assert store.failures_since(now - timedelta(hours=1)) == 2
    detail = store.get_job("j0")  # the job's detail still has its failure, marked retried
    assert detail is not None and detail.failure is not None and detail.failure.retried_at == now
    store.resolve_failures(["j1", "j2"], now)
    assert store.failed_jobs() == [] and store.failure_groups() == [] and store.failed_total() == 0
    assert store.failures_since(now - timedelta(hours=1)) == 0


def test_requeued_events_resolve_failures_in_any_order(store: PostgresStore, database_url: str) -> None:
    ev = Events()
    s = timedelta(seconds=1)
    failed, requeued = fail(ev, "a", T0), ev(EventKind.REQUEUED, "a", T0 + s, message="retry by me@host")
    store.apply_events([failed, requeued])  # one batch (a retry made while PostgreSQL was down)
    assert store.failed_total() == 0 == open_failures(database_url)
    store.apply_events([requeued, failed])  # delivered again: nothing changes
    assert store.failed_total() == 0 and count(database_url, "failed_jobs") == 1
    # Two writers: the retry's event lands before the failure it retried; the failure is born retried.
    b_failed, b_requeued = fail(ev, "b", T0 + 2 * s), ev(EventKind.REQUEUED, "b", T0 + 3 * s)
    store.apply_events([b_requeued])
    store.apply_events([b_failed])
    assert sql(database_url, "SELECT retried_at FROM failed_jobs WHERE job_id = 'b'") == [(T0 + 3 * s,)]
    assert store.failed_total() == 0 == open_failures(database_url)
    # A failure after the retry is a new, open one (in the same batch or later).
    store.apply_events([fail(ev, "b", T0 + 4 * s), fail(ev, "a", T0 + 5 * s)])
    assert sorted(f.job_id for f in store.failed_jobs()) == ["a", "b"]
    assert store.failed_total() == 2 == open_failures(database_url)
    # Failed, retried, failed, retried in one batch: each failure resolved by the retry after it.
    c = [fail(ev, "c", T0 + 6 * s), ev(EventKind.REQUEUED, "c", T0 + 7 * s),
         fail(ev, "c", T0 + 8 * s), ev(EventKind.REQUEUED, "c", T0 + 9 * s)]
    store.apply_events(c)
    assert sql(database_url, "SELECT failed_at, retried_at FROM failed_jobs WHERE job_id = 'c' ORDER BY id") == [
        (T0 + 6 * s, T0 + 7 * s), (T0 + 8 * s, T0 + 9 * s)]
    assert store.failed_total() == 2 == open_failures(database_url)

def test_out_of_order_batches_keep_the_latest_status(store: PostgresStore) -> None:
    ev = Events()
    started = ev(EventKind.STARTED, "late", T0 + timedelta(seconds=1), attempt=1, worker="w1")
    finished = ev(EventKind.FINISHED, "late", T0 + timedelta(seconds=3), duration=2.0)
    queued = ev(EventKind.QUEUED, "late", T0, type="report", priority=Priority.LOW, func="app.f")
    store.apply_events([finished])
    store.apply_events([started])
    store.apply_events([queued])
    rec = store.get_job("late").record  # type: ignore[union-attr]
    assert rec.status is JobStatus.FINISHED
    assert rec.finished_at == T0 + timedelta(seconds=3)  # the stale QUEUED did not clear it
    assert (rec.attempts, rec.worker, rec.started_at) == (1, "w1", T0 + timedelta(seconds=1))
    assert (rec.type, rec.priority, rec.func, rec.created_at) == ("report", Priority.LOW, "app.f", T0)


def test_requeue_clears_the_end_of_a_failed_job(store: PostgresStore) -> None:
    ev = Events()
    store.apply_events([ev(EventKind.STARTED, "j", T0, attempt=1),
                        fail(ev, "j", T0 + timedelta(seconds=1)),
                        ev(EventKind.REQUEUED, "j", T0 + timedelta(seconds=5))])
    rec = store.get_job("j").record  # type: ignore[union-attr]
    assert (rec.status, rec.finished_at, rec.failed_at, rec.attempts) == (JobStatus.QUEUED, None, None, 1)
    store.apply_events([ev(EventKind.STARTED, "j", T0 + timedelta(seconds=6))])  # no attempt: counted
    assert store.get_job("j").record.attempts == 2  # type: ignore[union-attr]


def test_event_messages_are_sentences() -> None:
    ev = Events()
    assert event_message(ev(EventKind.RETRY, "j", T0, attempt=2, delay=8.0, error_class="TemporaryError",
                            error_message="timeout\nmore")) == "retry 2 in 8.0s after TemporaryError: timeout"
    assert event_message(ev(EventKind.FINISHED, "j", T0, duration=1.25)) == "finished in 1.250s"
    assert event_message(ev(EventKind.QUEUED, "j", T0, message="custom")) == "custom"
    assert event_message(fail(ev, "j", T0, "KeyError", "'x'")) == "failed after 1 attempt: KeyError: 'x'"


def test_statement_errors_name_the_statement(store: PostgresStore) -> None:
    with pytest.raises(StoreUnavailable, match=r"^PostgreSQL refused record_audit: .*NUL") as err:
        store.record_audit("retry", "j\x00", "ops", "host")
    assert "\n" not in str(err.value)
    store.record_audit("retry", "job-1", "ops", "laptop", "from console")
    store.record_audit("delete", None, "ops", "laptop")
    entries = store.audit_entries()
    assert [(e["action"], e["job_id"], e["detail"]) for e in entries] == [
        ("delete", None, ""), ("retry", "job-1", "from console")]


# ---- reads -------------------------------------------------------------------------------------

def test_active_jobs_in_priority_order(store: PostgresStore) -> None:
    now = datetime.now(UTC)
    store.insert_jobs([
        new_job("low-old", now - timedelta(minutes=9), Priority.LOW),
        new_job("crit-new", now - timedelta(minutes=1), Priority.CRITICAL),
        new_job("crit-old", now - timedelta(minutes=5), Priority.CRITICAL),
        new_job("normal", now - timedelta(minutes=3), Priority.NORMAL),
        new_job("ancient", now - timedelta(days=8), Priority.CRITICAL),
        new_job("done", now - timedelta(minutes=2), Priority.CRITICAL, JobStatus.FINISHED),
    ])
    store.apply_events([Events()(EventKind.STARTED, "plain-rq", now, attempt=1)])  # no lane
    assert [j.id for j in store.active_jobs()] == ["crit-old", "crit-new", "normal", "low-old", "plain-rq"]
    assert [j.id for j in store.active_jobs(limit=2)] == ["crit-old", "crit-new"]


def test_failed_jobs_keyset_pagination_returns_each_once(store: PostgresStore) -> None:
    ev = Events()
    # 120 failures, 3 per timestamp, so pages must break ties on id
    store.apply_events([fail(ev, f"f{n:03d}", T0 + timedelta(seconds=n // 3)) for n in range(120)])
    seen = []
    before = None
    while page := store.failed_jobs(limit=50, before=before):
        assert len(page) <= 50
        seen.extend(page)
        before = (page[-1].failed_at, page[-1].id)
    assert len(seen) == 120
    assert len({f.id for f in seen}) == 120
    keys = [(f.failed_at, f.id) for f in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0].job_id in {"f117", "f118", "f119"}
    assert store.failed_total() == 120


def test_failed_jobs_search(store: PostgresStore) -> None:
    ev = Events()
    store.apply_events([
        fail(ev, "abc-1", T0, "ValueError", "bad value"),
        fail(ev, "xyz-2", T0 + timedelta(seconds=1), "KeyError", "missing 100% of keys", queue="high"),
        fail(ev, "xyz-3", T0 + timedelta(seconds=2), "KeyError", "missing"),
    ])
    assert [f.job_id for f in store.failed_jobs(search="keyerror")] == ["xyz-3", "xyz-2"]
    assert [f.job_id for f in store.failed_jobs(search="ABC")] == ["abc-1"]  # id prefix, any case
    assert [f.job_id for f in store.failed_jobs(search="HIGH")] == ["xyz-2"]  # queue
    assert [f.job_id for f in store.failed_jobs(search="100%")] == ["xyz-2"]
    assert store.failed_jobs(search="0%_") == []  # LIKE wildcards are literal
    assert store.failed_jobs(search="bc-1") == []  # ids match by prefix only
    assert store.failed_total(search="keyerror") == 2
    assert store.failed_total(search="  ") == 3


def test_failure_groups_and_their_jobs(store: PostgresStore) -> None:
    ev = Events()
    now = datetime.now(UTC).replace(microsecond=0)
    events = [fail(ev, f"t{n}", now - timedelta(minutes=10 - n), "TimeoutError", f"took {n}s")
              for n in range(5)]
    events += [fail(ev, f"k{n}", now - timedelta(minutes=5 - n), "KeyError", f"'user-{n}'") for n in range(3)]
    events += [fail(ev, "v0", now - timedelta(minutes=1), "ValueError", "bad")]
    events += [fail(ev, "old", now - timedelta(days=9), "ValueError", "bad")]
    events += [fail(ev, "t0", now, "TimeoutError", "took 99s")]  # the same job failing again
    store.apply_events(events)
    groups = store.failure_groups()
    assert [(g.error_class, g.count) for g in groups] == [("TimeoutError", 6), ("KeyError", 3), ("ValueError", 1)]
    timeout = groups[0]
    assert timeout.fingerprint == failure_fingerprint("TimeoutError", "took 1s")
    assert timeout.sample_message == "took 99s"
    assert (timeout.first_seen, timeout.last_seen) == (now - timedelta(minutes=10), now)
    assert store.failure_groups(days=None)[2].count == 2  # the 9-day-old failure counts all-time
    assert [g.error_class for g in store.failure_groups(search="keyerr")] == ["KeyError"]
    assert store.failure_groups(limit=1)[0].error_class == "TimeoutError"
    assert store.failed_job_ids_in_group(timeout.fingerprint) == ["t0", "t4", "t3", "t2", "t1"]
    assert store.failed_job_ids_in_group(timeout.fingerprint, limit=2) == ["t0", "t4"]
    assert store.failures_since(now - timedelta(minutes=4, seconds=30)) == 4
    assert store.failures_since(now + timedelta(seconds=1)) == 0


def test_stuck_jobs_are_long_running_processing_jobs(store: PostgresStore) -> None:
    ev = Events()
    now = datetime.now(UTC)
    store.apply_events([
        ev(EventKind.STARTED, "stuck-newer", now - timedelta(minutes=10), attempt=1),
        ev(EventKind.STARTED, "stuck-older", now - timedelta(hours=2), attempt=1),
        ev(EventKind.STARTED, "fresh", now - timedelta(seconds=5), attempt=1),
        ev(EventKind.STARTED, "done", now - timedelta(hours=3), attempt=1),
        ev(EventKind.FINISHED, "done", now - timedelta(hours=2, minutes=59)),
    ])
    assert [j.id for j in store.stuck_jobs(300)] == ["stuck-older", "stuck-newer"]
    assert [j.id for j in store.stuck_jobs(300, limit=1)] == ["stuck-older"]
    assert [j.id for j in store.stuck_jobs(1)] == ["stuck-older", "stuck-newer", "fresh"]


def test_throughput_is_zero_filled_per_minute(store: PostgresStore) -> None:
    ev = Events()
    m = timedelta(minutes=1)
    events = []
    for n, minute in enumerate([0, 0, 0, 3]):
        events += [ev(EventKind.STARTED, f"ok{n}", T0 + minute * m),
                   ev(EventKind.FINISHED, f"ok{n}", T0 + minute * m + timedelta(seconds=20))]
    events += [fail(ev, "bad0", T0 + 2 * m + timedelta(seconds=59)), fail(ev, "bad1", T0 + 3 * m)]
    events += [ev(EventKind.CANCELED, "cx", T0 + m)]  # not a success
    events += [ev(EventKind.FINISHED, "later", T0 + 9 * m)]  # outside the range
    store.apply_events(events)
    points = store.throughput_per_minute(T0 + timedelta(seconds=30), T0 + 4 * m + timedelta(seconds=1))
    assert [(p.minute, p.processed, p.failed) for p in points] == [
        (T0, 3, 0), (T0 + m, 0, 0), (T0 + 2 * m, 0, 1), (T0 + 3 * m, 1, 1), (T0 + 4 * m, 0, 0)]
    until_now = store.throughput_per_minute(datetime.now(UTC) - 2 * m)
    assert len(until_now) in (3, 4) and all(p.processed == p.failed == 0 for p in until_now)


def test_get_job_by_prefix(store: PostgresStore) -> None:
    store.insert_jobs([new_job("abc123"), new_job("abd456"), new_job("abc1234")])
    assert store.get_job("abc123").record.id == "abc123"  # type: ignore[union-attr]  # exact id wins
    assert store.get_job("abd").record.id == "abd456"  # type: ignore[union-attr]
    assert store.get_job("  abd4 ").record.id == "abd456"  # type: ignore[union-attr]
    with pytest.raises(JobNotFound, match=r"prefix 'ab' matches 3 jobs; type more of the id"):
        store.get_job("ab")
    assert store.get_job("zz") is None
    assert store.get_job("%") is None
    assert store.get_job("") is None
    assert store.get_job("abc123").logs == ()  # type: ignore[union-attr]
    assert prefix_bounds("ab") == ("ab", "ac")
    assert prefix_bounds("a\U0010ffff") == ("a\U0010ffff", "b")


# ---- plans -------------------------------------------------------------------------------------

def _node_types(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += _node_types(child)
    return found


def _index_used(plan: dict[str, Any]) -> set[str]:
    return {name for node, name in _node_types(plan)
            if node in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") and name}


def test_hot_queries_use_indexes(store: PostgresStore, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("""
            INSERT INTO jobs (id, type, queue, priority, status, attempts, created_at, started_at,
                              finished_at, updated_at)
            SELECT md5(n::text), 'report', 'default', n % 4,
                   CASE WHEN n % 100 = 0 THEN 'queued' WHEN n % 100 = 1 THEN 'processing' ELSE 'finished' END,
                   1, now() - n * interval '1 minute', now() - n * interval '1 minute',
                   CASE WHEN n % 100 > 1 THEN now() - n * interval '1 minute' END, now()
            FROM generate_series(1, 5000) AS n""")
        conn.execute("""
            INSERT INTO failed_jobs (event_id, job_id, type, queue, error_class, error_message,
                                     fingerprint, failed_at, attempts)
            SELECT n::text, md5(n::text), 'report', 'default', 'ValueError', 'bad ' || n,
                   left(md5((n % 20)::text), 12), now() - n * interval '10 minutes', 1
            FROM generate_series(1, 5000) AS n""")
        conn.execute("UPDATE failed_jobs SET retried_at = failed_at + interval '1 minute' WHERE id % 3 = 0")
        conn.execute("ANALYZE")
    no_search = query_params(None)  # the typed-search parameters, none filtering
    fingerprint, job_ids = hashlib.md5(b"1").hexdigest()[:12], [hashlib.md5(b"7").hexdigest()]
    plans = {
        "active_jobs": store.explain("active_jobs", {"limit": 100}),
        "failed_page": store.explain("failed_page", {"limit": 50, "before_at": "infinity",
                                                     "before_id": 2**63 - 1, **no_search}),
        "failed_page_next": store.explain("failed_page", {"limit": 50, "before_at": datetime.now(UTC),
                                                          "before_id": 100, **no_search}),
        "stuck_jobs": store.explain("stuck_jobs", {"seconds": 300.0, "limit": 100}),
        "failures_since": store.explain("failures_since", {"since": datetime.now(UTC) - timedelta(hours=1)}),
        "job_prefix_matches": store.explain("job_prefix_matches", {"lo": "ab", "hi": "ac", "cap": 1001}),
        "failure_groups": store.explain("failure_groups", {"limit": 100, "days": 7, **no_search}),
        "failed_job_ids_in_group": store.explain("failed_job_ids_in_group",
                                                 {"fingerprint": fingerprint, "limit": 10000}),
        "resolve_failures": store.explain("resolve_failures", {"ids": job_ids, "ats": [datetime.now(UTC)]}),
    }
    expected = {
        "active_jobs": "jobs_in_flight_idx",
        "failed_page": "failed_jobs_open_idx",
        "failed_page_next": "failed_jobs_open_idx",
        "stuck_jobs": "jobs_processing_idx",
        "failures_since": "failed_jobs_open_idx",
        "job_prefix_matches": "jobs_id_pattern_idx",
        "failure_groups": "failed_jobs_open_fingerprint_idx",  # each group's newest message
        "failed_job_ids_in_group": "failed_jobs_open_fingerprint_idx",
        "resolve_failures": "failed_jobs_job_id_idx",
    }
    for name, index in expected.items():
        assert index in _index_used(plans[name]), (name, _node_types(plans[name]))
    assert not any(node == "Seq Scan" for plan in plans.values() for node, _ in _node_types(plan))


# ---- prune -------------------------------------------------------------------------------------

def test_prune_deletes_old_history_in_batches_and_keeps_in_flight(store: PostgresStore,
                                                                   database_url: str) -> None:
    ev = Events()
    old, recent = T0 - timedelta(days=60), T0 - timedelta(days=1)
    events = []
    for n in range(5):
        events += [ev(EventKind.STARTED, f"old-ok{n}", old), ev(EventKind.FINISHED, f"old-ok{n}", old)]
    events += [ev(EventKind.STARTED, "old-fail", old), fail(ev, "old-fail", old)]
    events += [ev(EventKind.STARTED, "mid-fail", T0 - timedelta(days=20)),
               fail(ev, "mid-fail", T0 - timedelta(days=20))]
    events += [ev(EventKind.CANCELED, "old-cancel", old)]
    events += [ev(EventKind.STARTED, "recent-ok", recent), ev(EventKind.FINISHED, "recent-ok", recent)]
    events += [ev(EventKind.QUEUED, "old-queued", old), ev(EventKind.STARTED, "old-running", old)]
    store.apply_events(events)
    cutoff, failed_cutoff = T0 - timedelta(days=30), T0 - timedelta(days=10)
    logs_before = count(database_url, "job_logs")

    planned = store.prune(cutoff, failed_cutoff, batch_size=2, dry_run=True)
    # failed jobs are kept only 10 days here: both failures (60 and 20 days old) go too
    assert planned == {"jobs": 8, "job_logs": 15, "failed_jobs": 2}
    assert count(database_url, "job_logs") == logs_before

    planned = store.prune(cutoff, dry_run=True)
    assert planned == {"jobs": 7, "job_logs": 13, "failed_jobs": 1}
    assert count(database_url, "jobs") == 11  # dry runs delete nothing

    seen: list[int] = []
    assert store.prune(cutoff, batch_size=2, progress=seen.append) == planned
    assert len(seen) >= 4 and seen == sorted(seen) and seen[-1] == sum(planned.values())
    left = {r[0] for r in sql(database_url, "SELECT id FROM jobs")}
    assert left == {"mid-fail", "recent-ok", "old-queued", "old-running"}
    assert {r[0] for r in sql(database_url, "SELECT DISTINCT job_id FROM job_logs")} == left
    assert [r[0] for r in sql(database_url, "SELECT job_id FROM failed_jobs")] == ["mid-fail"]
    assert store.failed_total() == 1  # the trigger-kept counter followed the batched deletes
    assert store.prune(cutoff) == {"jobs": 0, "job_logs": 0, "failed_jobs": 0}


# ---- availability ------------------------------------------------------------------------------

def test_unreachable_server_gives_one_line_without_password() -> None:
    store = PostgresStore("postgresql://postgres:hunter2secret@127.0.0.1:1/x", connect_timeout=2)
    assert store.ping() is False
    with pytest.raises(StoreUnavailable) as err:
        store.active_jobs()
    message = str(err.value)
    assert message.startswith("PostgreSQL at 127.0.0.1:1/x is unreachable: ")
    assert message.endswith("; check the database URL and that the server is running")
    assert "\n" not in message
    assert "hunter2secret" not in message
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.apply_events([Events()(EventKind.QUEUED, "j", T0)])
    store.close()


def test_store_recovers_after_the_database_comes_back(store: PostgresStore, database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    store.insert_jobs([new_job("before")])
    assert store.ping() is True

    def allow(flag: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(flag).lower()}')
            if not flag:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (name,))

    allow(False)
    try:
        with pytest.raises(StoreUnavailable, match=re.escape(f"PostgreSQL at {store.target} is unreachable")):
            store.get_job("before")  # the pooled connection was killed: no stale error, no hang
        assert store.ping() is False
    finally:
        allow(True)
    assert store.job_status("before") is JobStatus.QUEUED
