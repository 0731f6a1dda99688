"""The set-based `PostgresStore.apply_events` against real PostgreSQL: it leaves exactly the rows
the per-event reference (`batch.apply_one_by_one`) leaves, whatever the batching and arrival
order; concurrent writers with overlapping batches neither deadlock nor lose an update; values
PostgreSQL rejects raise HistoryDataError."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobengine.errors import HistoryDataError, StoreUnavailable
from jobengine.models import JobEvent, NewJob
from jobengine.store.batch import apply_one_by_one
from jobengine.store.postgres import PostgresStore
from jobengine.store.sqlfile import queries
from jobengine.types import EventKind, JobStatus, Priority
from tests.engine.helpers import wait_for_a_lock_wait

T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
KINDS = list(EventKind)


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(database_url) as s:
        yield s


ORDER_FREE_JOB_COLUMNS = "id, type, queue, priority, status, attempts, func, args, worker, created_at, updated_at"
"""The job columns arrival order cannot change. The per-event rules themselves make the others
depend on it: an event older than the row only fills gaps in these, never in started_at,
finished_at, failed_at, duration or scheduled_for (a late `finished` after a newer `started`
leaves finished_at empty; in order it would have set it before the `started` came)."""


def snapshot(url: str, job_columns: str = "*") -> dict[str, list[tuple[Any, ...]]]:
    """Every history row that matters, without serial ids (they differ between runs)."""
    with psycopg.connect(url) as conn:
        return {
            "jobs": conn.execute(f"SELECT {job_columns} FROM jobs ORDER BY id").fetchall(),
            "job_logs": conn.execute("SELECT event_id, job_id, created_at, kind, level, attempt, delay, message "
                                     "FROM job_logs ORDER BY event_id").fetchall(),
            "failed_jobs": conn.execute("SELECT event_id, job_id, type, queue, error_class, error_message, "
                                        "traceback, fingerprint, failed_at, attempts, retried_at "
                                        "FROM failed_jobs ORDER BY event_id").fetchall(),
            "counter": conn.execute("SELECT value, (SELECT count(*) FROM failed_jobs WHERE retried_at IS NULL) "
                                    "FROM history_counters WHERE name = 'failed_jobs'").fetchall(),
        }


def reference(url: str, batches: Sequence[Sequence[JobEvent]]) -> None:
    """What the writer did before: one `apply_event` statement per event, a transaction per batch."""
    q = queries()
    for batch in batches:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            apply_one_by_one(cur, q["apply_event"], q["resolve_failures"], batch)


def dispatched(job_ids: Sequence[str]) -> list[NewJob]:
    return [NewJob(id=j, type=f"t-{j}", queue="default", priority=Priority.NORMAL, status=JobStatus.QUEUED,
                   func=f"f.{j}", args="(1,)", created_at=T0 - timedelta(seconds=30)) for j in job_ids]


def random_events(rng: random.Random, jobs: int, per_job: int, *, commutative: bool = False) -> list[JobEvent]:
    """Random histories: every kind, ties in time, missing fields. One type, func, worker and at
    most one `requeued` per job, failures always typed (as workers send them). `commutative`:
    explicit attempts and durations, one queue and priority per job, a typed event in each job
    and no two events of a job at the same time, so ORDER_FREE_JOB_COLUMNS cannot depend on
    arrival order."""
    events: list[JobEvent] = []
    for n in range(jobs):
        job = f"job-{n:03d}"
        requeued = False
        count = rng.randint(1, per_job)
        times = rng.sample(range(13), count) if commutative else [rng.randint(0, 12) for _ in range(count)]
        queue, priority = rng.choice(["default", "high"]), rng.choice([None, Priority.HIGH, Priority.LOW])
        for i, second in enumerate(times):
            kind = rng.choice(KINDS)
            if kind is EventKind.REQUEUED:
                if requeued:
                    kind = EventKind.QUEUED
                requeued = True
            failed = kind is EventKind.FAILED
            events.append(JobEvent(
                event_id=f"{1700000000000 + len(events)}-0", kind=kind, job_id=job,
                at=T0 + timedelta(seconds=second),
                queue=queue if commutative else rng.choice(["default", "high"]),
                type=f"t-{job}" if failed or (commutative and i == 0) or rng.random() < 0.4 else None,
                priority=rng.choice([None, priority if commutative else rng.choice([Priority.HIGH, Priority.LOW])]),
                attempt=rng.randint(1, 3) if commutative or rng.random() < 0.5 else None,
                duration=(rng.choice([0.5, 1.25]) if commutative or rng.random() < 0.5 else None)
                if kind in (EventKind.FINISHED, EventKind.FAILED) else None,
                delay=rng.choice([None, 2.0, 7.5]), func=rng.choice([None, f"f.{job}"]),
                args=rng.choice([None, "(2,)"]), worker=rng.choice([None, f"w-{n % 3}"]),
                error_class=rng.choice([None, "ValueError"]) if failed or kind is EventKind.RETRY else None,
                error_message=rng.choice(["bad 1", "bad 2\nmore"]) if failed else None,
                traceback="Traceback ..." if failed else None,
            ))
    return events


def random_batches(rng: random.Random, events: Sequence[JobEvent]) -> list[list[JobEvent]]:
    """The events shuffled into batches of 1-40 (out of order across batches), some delivered twice."""
    shuffled = list(events)
    rng.shuffle(shuffled)
    batches: list[list[JobEvent]] = []
    while shuffled:
        size = rng.randint(1, 40)
        batches.append(shuffled[:size])
        shuffled = shuffled[size:]
        if rng.random() < 0.2:
            batches.append(list(batches[rng.randrange(len(batches))]))  # a writer died before its XACK
    return batches


@pytest.mark.parametrize("seed", range(12))
def test_set_based_apply_leaves_the_rows_of_the_per_event_apply(store: PostgresStore, database_url: str,
                                                                 seed: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, jobs=12, per_job=9)
    batches = random_batches(rng, events)
    rows = dispatched([f"job-{n:03d}" for n in range(0, 12, 2)])  # half the jobs were dispatched by us
    store.insert_jobs(rows)
    reference(database_url, batches)
    expected = snapshot(database_url)
    store.clear_history()
    store.insert_jobs(rows)
    applied = [store.apply_events(batch) for batch in batches]
    assert snapshot(database_url) == expected
    assert sum(applied) == len(events)  # each event counted once, re-deliveries as 0
    assert expected["counter"][0][0] == expected["counter"][0][1]


def test_several_events_of_one_job_in_one_batch_apply_in_event_order(store: PostgresStore) -> None:
    s = timedelta(seconds=1)

    def ev(n: int, kind: EventKind, at: datetime, **details: Any) -> JobEvent:
        return JobEvent(event_id=f"17000000{n:05d}-0", kind=kind, job_id="j", at=at, queue="default", **details)

    batch = [  # stream order is not event order: the apply sorts by time
        ev(5, EventKind.FINISHED, T0 + 9 * s, duration=1.0),
        ev(1, EventKind.QUEUED, T0, type="report", func="app.report", priority=Priority.HIGH),
        ev(4, EventKind.STARTED, T0 + 8 * s, worker="w2"),
        ev(2, EventKind.STARTED, T0 + s, worker="w1"),
        ev(3, EventKind.RETRY, T0 + 2 * s, attempt=1, delay=5.0, error_class="TemporaryError"),
    ]
    assert store.apply_events(batch) == 5
    detail = store.get_job("j")
    assert detail is not None
    rec = detail.record
    assert (rec.status, rec.attempts, rec.worker, rec.duration) == (JobStatus.FINISHED, 2, "w2", 1.0)
    assert (rec.started_at, rec.finished_at, rec.created_at) == (T0 + 8 * s, T0 + 9 * s, T0)
    assert [log.kind for log in detail.logs] == ["queued", "started", "retry", "started", "finished"]
    assert store.apply_events(batch) == 0


def test_events_arriving_out_of_order_across_batches(store: PostgresStore, database_url: str) -> None:
    rng = random.Random(7)
    events = random_events(rng, jobs=20, per_job=8, commutative=True)
    reference(database_url, [events])  # everything in one batch, in event order
    in_order = snapshot(database_url, ORDER_FREE_JOB_COLUMNS)
    for order in ("reversed", "one by one, shuffled", "shuffled batches"):
        if order == "reversed":
            batches = [[e] for e in reversed(events)]
        elif order == "one by one, shuffled":
            batches = [[e] for e in rng.sample(events, len(events))]
        else:
            batches = random_batches(rng, events)
        store.clear_history()
        reference(database_url, batches)
        expected = snapshot(database_url)
        store.clear_history()
        for batch in batches:
            store.apply_events(batch)
        assert snapshot(database_url) == expected, order  # what the per-event apply made of that order
        assert snapshot(database_url, ORDER_FREE_JOB_COLUMNS) == in_order, order
        statuses = {row[0]: row[4] for row in in_order["jobs"]}
        latest = {e.job_id: e for e in sorted(events, key=lambda e: e.at)}
        assert statuses == {job: e.kind.status.value for job, e in latest.items()}


def run_together(stores: Sequence[PostgresStore], plans: Sequence[list[list[JobEvent]]]) -> list[BaseException]:
    """Each store applies its batches in its own thread, all starting at once; the errors raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def write(store: PostgresStore, plan: list[list[JobEvent]]) -> None:
        try:
            start.wait()
            for batch in plan:
                store.apply_events(batch)
        except BaseException as exc:  # returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, plans, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_concurrent_writers_with_overlapping_batches_do_not_deadlock(database_url: str) -> None:
    rng = random.Random(11)
    stores = [PostgresStore(database_url, max_size=1) for _ in range(2)]
    try:
        for rnd in range(12):
            events = random_events(rng, jobs=150, per_job=8, commutative=True)
            rows = dispatched(sorted({e.job_id for e in events})[::2])  # half of them have a row already
            stores[0].clear_history()
            stores[0].insert_jobs(rows)
            reference(database_url, [events])  # the rows to expect, then cleared
            expected = snapshot(database_url, ORDER_FREE_JOB_COLUMNS)
            stores[0].clear_history()
            stores[0].insert_jobs(rows)
            # Each writer gets events of every job (a job's start and end come from different
            # processes); one event in fifty goes to both (a batch claimed from a writer that
            # died); batches are cut at different places and applied in a different order.
            share = [[0, 1] if rng.random() < 0.02 else [rng.randrange(2)] for _ in events]
            plans = []
            for w in range(2):
                mine = [e for e, owners in zip(events, share, strict=True) if w in owners]
                rng.shuffle(mine)
                plans.append([mine[k:k + 60] for k in range(0, len(mine), 60)])
            assert run_together(stores, plans) == []
            assert [s.transient_retries for s in stores] == [0, 0]  # not one deadlock, even retried
            assert snapshot(database_url, ORDER_FREE_JOB_COLUMNS) == expected, rnd
    finally:
        for s in stores:
            s.close()


def test_a_deadlock_victim_batch_is_applied_again(store: PostgresStore, database_url: str) -> None:
    """An operator's transaction holding a failure the batch resolves, then waiting for the batch's
    job: PostgreSQL aborts the batch (it waited first); the store runs it again once it may."""
    fail = JobEvent(event_id="1-0", kind=EventKind.FAILED, job_id="j", at=T0, queue="default", attempt=1,
                    error_class="ValueError", error_message="bad")
    store.apply_events([fail])
    requeued = JobEvent(event_id="2-0", kind=EventKind.REQUEUED, job_id="j", at=T0 + timedelta(seconds=1),
                        queue="default")
    errors: list[BaseException] = []
    with psycopg.connect(database_url) as operator:
        operator.execute("SET deadlock_timeout = '5s'")  # the batch's detector, at 1 s, fires first
        operator.execute("UPDATE failed_jobs SET error_message = 'held' WHERE job_id = 'j'")
        batch = threading.Thread(target=lambda: errors.extend(run_together([store], [[[requeued]]])))
        batch.start()
        wait_for_a_lock_wait(operator)  # the batch waits for the failure row (it holds job j by then)
        operator.execute("SELECT 1 FROM jobs WHERE id = 'j' FOR UPDATE")  # a deadlock: the batch is the victim
        operator.commit()
        batch.join(timeout=30)
    assert errors == [] and store.transient_retries == 1
    assert store.job_status("j") is JobStatus.QUEUED and store.failed_total() == 0
    assert store.get_job("j").failure.error_message == "held"  # type: ignore[union-attr]


def test_rejected_values_raise_a_data_error_and_change_nothing(store: PostgresStore, database_url: str) -> None:
    good = JobEvent(event_id="1-0", kind=EventKind.STARTED, job_id="ok", at=T0, queue="default", attempt=1)
    poison = JobEvent(event_id="2-0", kind=EventKind.FAILED, job_id="bad", at=T0, queue="default", attempt=1,
                      error_class="ValueError", error_message="nul \x00 byte")
    with pytest.raises(HistoryDataError, match=r"^PostgreSQL refused apply_events as data: .*(NUL|0x00)") as err:
        store.apply_events([good, poison])
    assert isinstance(err.value, StoreUnavailable) and "\n" not in str(err.value)
    assert snapshot(database_url)["job_logs"] == []  # one transaction: the good event is not in either
    assert store.apply_events([good]) == 1  # the store is fine afterwards
    with pytest.raises(HistoryDataError):
        store.apply_events([JobEvent(event_id="3-0", kind=EventKind.QUEUED, job_id="j\x00", at=T0, queue="q")])
    assert store.job_status("ok") is JobStatus.PROCESSING


def test_an_unreachable_server_is_not_a_data_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/x", connect_timeout=1)
    with pytest.raises(StoreUnavailable, match="unreachable") as err:
        store.apply_events([JobEvent(event_id="1-0", kind=EventKind.QUEUED, job_id="j", at=T0, queue="q")])
    assert not isinstance(err.value, HistoryDataError)
    store.close()
