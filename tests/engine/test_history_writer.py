"""The history writer at the worker's speed, against real Redis and PostgreSQL: rows built straight
from stream entries are the rows of `parse_events`; a backlog grows the read size (and an idle
stream shrinks it) without changing what lands; a batch that fails while the next one was read
leaves both pending and both land once; two writers (and a third that died holding entries)
overlapping on one stream leave the rows of the per-event reference; so do one writer's two
batches in flight at once, and its flush at stop; an idle writer takes a new event at once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from jobengine import keys
from jobengine.errors import StoreUnavailable
from jobengine.history import event_fields, parse_events
from jobengine.history.events import entry_rows
from jobengine.history.writer import HistoryWriter
from jobengine.models import JobEvent
from jobengine.store.batch import batch_rows, in_order, ordered_rows
from jobengine.store.postgres import PostgresStore
from jobengine.types import EventKind
from tests.engine.helpers import scalar
from tests.engine.test_history_apply import ORDER_FREE_JOB_COLUMNS, random_events, reference, snapshot


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(database_url) as s:
        s.migrate()
        yield s


def xadd_all(conn: redis.Redis, events: Sequence[JobEvent], *, fold: float = 0.0, rng: random.Random | None = None,
             ids: bool = False) -> None:
    """The events as producers write them (the stream assigns the ids, or with `ids` takes the
    events' own); with `fold`, that share of finished/failed events carries its run's start as a
    worker folds it in."""
    with conn.pipeline(transaction=False) as pipe:
        for e in events:
            details: dict[str, Any] = {name: getattr(e, name) for name in (
                "type", "priority", "attempt", "duration", "delay", "func", "args", "worker", "error_class",
                "error_message", "traceback", "message")}
            if rng is not None and e.kind in (EventKind.FINISHED, EventKind.FAILED) and rng.random() < fold:
                details["started"] = f"{(e.at - timedelta(seconds=0.25)).timestamp():.6f}"
            pipe.xadd(keys.EVENTS_STREAM, event_fields(e.kind, e.job_id, e.queue, at=e.at, **details),  # type: ignore[arg-type]
                      id=e.event_id if ids else "*")
        pipe.execute()


def streamed(conn: redis.Redis) -> list[JobEvent]:
    """The stream's entries as JobEvents (the ids the stream gave them)."""
    return [ev for eid, raw in conn.xrange(keys.EVENTS_STREAM) for ev in parse_events(eid.decode(), raw)]


def stream_empty(conn: redis.Redis) -> bool:
    try:
        pending = conn.xpending(keys.EVENTS_STREAM, keys.HISTORY_GROUP)
    except redis.ResponseError:  # no group yet: the writer has not read
        return False
    return conn.xlen(keys.EVENTS_STREAM) == 0 and pending["pending"] == 0


def wait_until(check: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("seed", range(4))
def test_entry_rows_are_the_rows_of_parse_events(conn: redis.Redis, redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, jobs=60, per_job=6)
    events[0] = JobEvent(event_id="x", kind=EventKind.FAILED, job_id="tab\tjob", at=events[0].at, queue="q",
                         attempt=1, error_class=None, error_message="é \\ back\tslash\nline 2", traceback="tb\r\n")
    xadd_all(conn, events, fold=0.5, rng=rng)
    decoded = redis.Redis.from_url(redis_url, decode_responses=True)
    for client in (conn, decoded):  # bytes from the writer's client, str from one that decodes
        entries = [(eid.decode() if isinstance(eid, bytes) else eid, raw)
                   for eid, raw in client.xrange(keys.EVENTS_STREAM)]
        expected = batch_rows(in_order([ev for eid, raw in entries for ev in parse_events(eid, raw)]))
        rng.shuffle(entries)  # a claimed batch need not be in stream order
        assert ordered_rows([row for eid, raw in entries for row in entry_rows(eid, raw)]) == expected
    decoded.close()


def test_a_backlog_grows_the_read_and_every_row_lands_once(conn: redis.Redis, store: PostgresStore,
                                                           database_url: str) -> None:
    rng = random.Random(5)
    xadd_all(conn, random_events(rng, jobs=500, per_job=8, commutative=True))
    events = streamed(conn)
    reference(database_url, [events])
    expected = snapshot(database_url, ORDER_FREE_JOB_COLUMNS)
    store.clear_history()
    writer = HistoryWriter(conn, store, batch=50, max_batch=800)
    assert writer.drain() == len(events) > 2000
    assert snapshot(database_url, ORDER_FREE_JOB_COLUMNS) == expected
    assert writer.batches == 6  # 50, 100, 200, 400, 800 and the rest: not 47 transactions of 50
    assert writer.size == 400  # the closing read found nothing: halved
    assert stream_empty(conn) and writer.drain() == 0
    for n in range(5):  # a trickle: each read is small, the size halves back to `batch`
        xadd_all(conn, [JobEvent(event_id="", kind=EventKind.QUEUED, job_id=f"late-{n}", at=events[0].at,
                                 queue="default")])
        assert writer.drain_once() == 1
    assert writer.size == 50
    assert scalar(database_url, "SELECT count(*) FROM job_logs") == len(events) + 5


class FailingStore:
    """The real store, refusing the apply calls numbered in `fail` (1-based) as an outage would."""

    def __init__(self, store: PostgresStore, fail: set[int]) -> None:
        self.store, self.fail, self.calls = store, fail, 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def apply_rows(self, rows: Sequence[tuple[Any, ...]]) -> int:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call in self.fail:
            raise StoreUnavailable(f"PostgreSQL refused apply_events: call {call} (test)")
        return self.store.apply_rows(rows)


def test_a_failure_while_the_next_batch_was_read_loses_nothing(conn: redis.Redis, store: PostgresStore,
                                                               database_url: str) -> None:
    rng = random.Random(8)
    xadd_all(conn, random_events(rng, jobs=300, per_job=8, commutative=True))
    events = streamed(conn)
    reference(database_url, [events])
    expected = snapshot(database_url, ORDER_FREE_JOB_COLUMNS)
    store.clear_history()
    failing = FailingStore(store, fail={2, 5, 6})
    writer = HistoryWriter(conn, failing, batch=40, max_batch=160)  # type: ignore[arg-type]
    writer.start(interval=0.02)  # pipelined: batch k+1 is read while k fails
    try:
        wait_until(lambda: stream_empty(conn))
    finally:
        writer.stop()
    assert failing.calls > 6 and writer.last_error is None
    assert scalar(database_url, "SELECT count(*) FROM job_logs") == len(events)
    assert snapshot(database_url, ORDER_FREE_JOB_COLUMNS) == expected


def test_two_writers_and_a_dead_one_overlapping_leave_the_reference_rows(conn: redis.Redis, redis_url: str,
                                                                         database_url: str) -> None:
    rng = random.Random(13)
    events = random_events(rng, jobs=400, per_job=8, commutative=True)
    rng.shuffle(events)  # a job's events reach the stream out of order
    events = [replace(e, event_id=f"{1700000000000 + n}-0") for n, e in enumerate(events)]  # ids in that order
    with PostgresStore(database_url) as setup:
        setup.migrate()
    reference(database_url, [events])
    expected = snapshot(database_url, ORDER_FREE_JOB_COLUMNS)
    with PostgresStore(database_url) as setup:
        setup.clear_history()
    stores = [PostgresStore(database_url, max_size=2) for _ in range(2)]
    writers = [HistoryWriter(redis.Redis.from_url(redis_url), s, batch=20, max_batch=400, claim_idle=0.3,
                             consumer=f"w{i}") for i, s in enumerate(stores)]
    half = len(events) // 2
    xadd_all(conn, events[:half], ids=True)
    conn.xgroup_create(keys.EVENTS_STREAM, keys.HISTORY_GROUP, id="0")
    conn.xreadgroup(keys.HISTORY_GROUP, "dead", {keys.EVENTS_STREAM: ">"}, count=100)  # and never writes
    try:
        for w in writers:
            w.start(interval=0.02)
        for k in range(half, len(events), 150):  # the rest while both write
            xadd_all(conn, events[k:k + 150], ids=True)
            time.sleep(0.01)
        wait_until(lambda: stream_empty(conn))
    finally:
        for w in writers:
            w.stop()
        for s in stores:
            s.close()
    assert all(w.written > 0 for w in writers) and sum(w.dead for w in writers) == 0
    assert [s.transient_retries for s in stores] == [0, 0]  # no deadlock, not even one retried
    assert scalar(database_url, "SELECT count(*) FROM job_logs") == len(events)
    assert snapshot(database_url, ORDER_FREE_JOB_COLUMNS) == expected


class SlowStore:
    """The real store behind a slow link (each apply takes 20 ms more), counting applies at once."""

    def __init__(self, store: PostgresStore) -> None:
        self.store, self.now, self.most = store, 0, 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def apply_rows(self, rows: Sequence[tuple[Any, ...]]) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.02)
            return self.store.apply_rows(rows)
        finally:
            with self.lock:
                self.now -= 1


def test_two_batches_in_flight_out_of_order_and_a_flush_at_stop(conn: redis.Redis, store: PostgresStore,
                                                                 database_url: str) -> None:
    """One writer applies two batches at once (a job's events split across them, out of order), and
    stop(flush=True) right after the last event leaves every row, without a second drain."""
    rng = random.Random(21)
    events = random_events(rng, jobs=300, per_job=8, commutative=True)
    rng.shuffle(events)
    events = [replace(e, event_id=f"{1700000000000 + n}-0") for n, e in enumerate(events)]
    reference(database_url, [events])
    expected = snapshot(database_url, ORDER_FREE_JOB_COLUMNS)
    store.clear_history()
    slow = SlowStore(store)
    writer = HistoryWriter(conn, slow, batch=20, max_batch=100)  # type: ignore[arg-type]
    writer.start(interval=0.02)
    for k in range(0, len(events), 200):
        xadd_all(conn, events[k:k + 200], ids=True)
        time.sleep(0.01)
    writer.stop(flush=True)
    assert slow.most == writer.depth == 2  # never more at once than `depth`
    assert writer.flushed  # the loop wrote the rest itself
    assert stream_empty(conn) and store.transient_retries == 0
    assert scalar(database_url, "SELECT count(*) FROM job_logs") == len(events)
    assert snapshot(database_url, ORDER_FREE_JOB_COLUMNS) == expected


def test_an_idle_writer_takes_a_new_event_at_once_and_stops_at_once(conn: redis.Redis, store: PostgresStore,
                                                                     database_url: str) -> None:
    writer = HistoryWriter(conn, store)
    writer.start(interval=5.0)  # the longest an idle read waits in Redis, not a sleep between reads
    try:
        time.sleep(0.3)  # idle: blocked in XREADGROUP
        sent = time.monotonic()
        xadd_all(conn, [JobEvent(event_id="", kind=EventKind.QUEUED, job_id="now", at=datetime.now(UTC),
                                 queue="default")])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM jobs WHERE id = 'now'") == 1, 10)
        assert time.monotonic() - sent < 1.0
        time.sleep(0.3)  # idle again
    finally:
        asked = time.monotonic()
        writer.stop()
    assert time.monotonic() - asked < 1.0  # the waiting read is unblocked, not waited out (5 s)
    assert stream_empty(conn)

