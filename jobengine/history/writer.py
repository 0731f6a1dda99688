"""Job history off the hot path: events wait in a Redis stream, the writer copies them to PostgreSQL.

`HistoryWriter` reads the stream (format: history/events.py) through a consumer group in batches,
applies each batch in one PostgreSQL transaction (idempotent: event ids are unique), then
acknowledges and deletes the entries. While PostgreSQL is down the events wait in Redis and
reach PostgreSQL once it is back; a writer that died leaves its pending entries to be claimed
by another after `claim_idle` seconds.

At the worker's speed: the next batch is read and turned into rows while PostgreSQL applies the
current ones (`depth`, two by default, batches in flight at once, each on a connection of its
own, so PostgreSQL applies them on two cores; their row locks are taken in one order, as for
several writers); the read size adapts to the backlog (it
doubles from `batch` toward `max_batch` while reads come back full, halves again when they do
not); an idle writer waits in `XREADGROUP BLOCK`, so a new event is picked up at once, never after
a sleep. Entries become the store's batch rows in one pass (`events.entry_rows`).

Poison never blocks the stream: an entry that does not parse, or a batch PostgreSQL refuses as
data (`HistoryDataError`), is split in halves until each refused entry stands alone; the rest
is applied and each refused entry is parked in the dead-letter stream (history/deadletters.py)
with the error, in the MULTI that acknowledges and deletes it. A Redis reset takes the consumer
group with it: the writer re-creates it on NOGROUP. Every batch written stamps
`keys.HISTORY_PROGRESS` (`last_write`), so any process can tell a writer that stalls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import redis

from jobengine import keys
from jobengine.errors import HistoryDataError, StoreUnavailable
from jobengine.history import deadletters
from jobengine.history.events import entry_rows
from jobengine.store.batch import Keyed, ordered_rows
from jobengine.store.protocol import HistoryStore

log = logging.getLogger("jobengine.history")

YIELD_EVERY = 256
"""Entries parsed between two releases of the GIL (about 2 ms of Python): the worker thread of the
same process waits for the GIL at most that long, not a whole switch interval (5 ms) each time."""
Entries = list[tuple[str, Any]]
Written = tuple[int, int]  # (entries taken off the stream, events written)


def _as_sent(response: Any, **options: Any) -> Any:
    return response


def _entries(got: Any) -> Entries:
    """XREADGROUP's reply for our one stream, as Redis sent it (RESP2: [[stream, entries]], RESP3:
    {stream: entries}); each entry (id, [field, value, ...]) or (id, None) once deleted."""
    if not got:
        return []
    return _ids(next(iter(got.values())) if isinstance(got, dict) else got[0][1])


def _ids(entries: Any) -> Entries:
    return [(eid.decode() if isinstance(eid, bytes) else eid, raw) for eid, raw in entries]


def _mapping(raw: Any) -> dict[Any, Any]:
    """An entry's fields as a mapping (dead letters keep them byte for byte)."""
    if isinstance(raw, list):
        it = iter(raw)
        return dict(zip(it, it, strict=False))
    return dict(raw)


class _Applier:
    """`depth` daemon threads, each writing one batch at a time while the caller reads the next (daemons,
    unlike concurrent.futures' workers, so a process that never stops its writer still exits)."""

    def __init__(self, write: Callable[[Entries], Written], depth: int) -> None:
        self._write = write
        self._work: queue.SimpleQueue[tuple[Future[Written], Entries] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name="history-apply", daemon=True)
                         for _ in range(depth)]
        for thread in self._threads:
            thread.start()

    def submit(self, entries: Entries) -> Future[Written]:
        future: Future[Written] = Future()
        self._work.put((future, entries))
        return future

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, entries = item
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._write(entries))
            except BaseException as exc:  # handed to the reader, which waits for every batch
                future.set_exception(exc)

    def __enter__(self) -> _Applier:
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=60)


def _settled(inflight: deque[Future[Written]]) -> int:
    """Wait for every batch in flight; the events they wrote. The first error is raised once all
    of them are done (nothing may stay in flight when the own pending entries are read again)."""
    written, error = 0, None
    while inflight:
        try:
            written += inflight.popleft().result()[1]
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
    return written


class HistoryWriter:
    """Copies events from the Redis stream to PostgreSQL in batches."""

    def __init__(self, connection: redis.Redis, store: HistoryStore, *, batch: int = 500,
                 max_batch: int = 5000, linger: float = 0.005, consumer: str | None = None,
                 claim_idle: float = 30.0, prepare: Callable[[], object] | None = None,
                 depth: int = 2) -> None:
        """`batch` is the first and smallest read, `max_batch` the largest a backlog grows it to;
        `linger` is how long the background loop lets events gather after a read that was not
        full (fewer, larger transactions; it adds at most that much lag). `prepare` runs before
        each batch is applied (the engine's: apply migrations not yet applied; it may raise
        StoreUnavailable, and then the batch waits). `depth` batches at most are applied at once,
        each on a pooled connection of its own."""
        self.connection = connection
        self._raw = redis.Redis(connection_pool=connection.connection_pool)  # stream reads, as Redis sends them
        for command in ("XREADGROUP", "XAUTOCLAIM"):  # fields stay flat lists: no dict per entry
            self._raw.set_response_callback(command, _as_sent)
        self.store = store
        self.batch = batch
        self.max_batch = max(max_batch, batch)
        self.size = batch  #: the current read size
        self.linger = linger
        self.depth = max(1, depth)
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.claim_idle_ms = int(claim_idle * 1000)
        self._claim_every = max(0.5, min(5.0, claim_idle / 2))
        self._claimed_at = float("-inf")
        self._recover = True  # read this consumer's own pending entries first (start, after a failure)
        self._blocker: redis.Redis | None = None  # see _blocking
        self._blocker_id: int | None = None
        self._group_ready = False
        self._stop = threading.Event()
        self._flushing = False  # stop(flush=True) asked the loop to write what is left first
        self.flushed = False  #: the last stop(flush=True): the loop itself wrote everything
        self._thread: threading.Thread | None = None
        self._prepare = prepare
        self.written = 0
        self.dead = 0  #: entries this writer parked as dead letters
        self.batches = 0  #: transactions that wrote a batch (or a part of one)
        self.last_error: str | None = None

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.connection.xgroup_create(keys.EVENTS_STREAM, keys.HISTORY_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self, block_ms: int | None = None) -> Entries:
        """Own pending entries first (a failed write: `_recover` stays True while they last), then
        entries idle elsewhere (every few seconds), then new ones, waiting up to `block_ms` for
        them. A missing group (NOGROUP: Redis lost its data) is created again."""
        try:
            return self._read_entries(block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no longer exists" not in str(exc):
                raise
            log.warning("history consumer group %s is gone (Redis reset?): creating it again", keys.HISTORY_GROUP)
            self._group_ready = False
            return self._read_entries(None)

    def _read_entries(self, block_ms: int | None) -> Entries:
        self._ensure_group()
        if self._recover:
            got: Any = self._raw.xreadgroup(keys.HISTORY_GROUP, self.consumer, {keys.EVENTS_STREAM: "0"},
                                            count=self.size)
            if entries := _entries(got):
                return entries
            self._recover = False
        clock = time.monotonic()
        if clock - self._claimed_at >= self._claim_every:
            self._claimed_at = clock
            claimed: Any = self._raw.xautoclaim(keys.EVENTS_STREAM, keys.HISTORY_GROUP, self.consumer,
                                                self.claim_idle_ms, "0-0", count=self.size)
            if claimed and claimed[1]:
                return _ids(claimed[1])
        client = self._raw
        if block_ms:
            client = self._blocking()
            if self._stop.is_set():
                return []
        got = client.xreadgroup(keys.HISTORY_GROUP, self.consumer, {keys.EVENTS_STREAM: ">"},
                                count=self.size, block=block_ms)
        return _entries(got)

    def _blocking(self) -> redis.Redis:
        """The client of the waiting reads: one connection of its own, whose id `stop()` unblocks
        (CLIENT UNBLOCK), so a writer that waits for events stops at once."""
        if self._blocker is None:
            pool = self.connection.connection_pool
            own: redis.ConnectionPool = redis.ConnectionPool(connection_class=pool.connection_class,
                                                             max_connections=1, **pool.connection_kwargs)
            self._blocker = redis.Redis(connection_pool=own)
            self._blocker.set_response_callback("XREADGROUP", _as_sent)
        if self._blocker_id is None:
            self._blocker_id = int(self._blocker.client_id())
        return self._blocker

    def _adapt(self, taken: int) -> None:
        """A full read means more is waiting: read twice as many next time; a read a quarter full
        or less halves the size again (never below `batch`)."""
        if taken >= self.size:
            self.size = min(self.size * 2, self.max_batch)
        elif taken <= self.size // 4:
            self.size = max(self.size // 2, self.batch)

    def drain_once(self) -> int:
        """Write one batch; returns how many events reached PostgreSQL (0 when none waited).

        Entries PostgreSQL refuses as data, or that do not parse, become dead letters (counted
        in `dead`). Raises StoreUnavailable when PostgreSQL cannot take the batch; what is not
        written yet stays pending (what was, is acknowledged)."""
        entries = self._read()
        self._adapt(len(entries))
        return self._write(entries)[1] if entries else 0

    def _write(self, entries: Entries) -> Written:
        """Parse, apply and settle one batch read off the stream: (entries taken, events written).
        On any error the entries not settled stay pending and the next read starts with them."""
        try:
            return self._write_batch(entries)
        except BaseException:
            self._recover = True
            raise

    def _write_batch(self, entries: Entries) -> Written:
        raws = dict(entries)
        parsed: list[tuple[str, list[Keyed]]] = []
        rejected: list[tuple[str, str]] = []
        for n, (eid, raw) in enumerate(entries, 1):
            if not n % YIELD_EVERY:  # a large batch: let the worker thread have the GIL (a few ms apart)
                time.sleep(0)
            if not raw:  # deleted while pending (XDEL by another writer): nothing to write
                rejected.append((eid, ""))
                continue
            try:
                parsed.append((eid, entry_rows(eid, raw)))
            except (KeyError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                rejected.append((eid, f"unreadable event: {type(exc).__name__}: {exc}"))
        applied: list[str] = []
        try:
            if parsed and self._prepare is not None:
                self._prepare()
            return len(entries), self._apply(parsed, applied, rejected)
        finally:
            self._settle(applied, rejected, raws)

    # ---- pipelined reading: the next batch is read while the current ones are applied --------
    def _step(self, pool: _Applier, inflight: deque[Future[Written]], block_ms: int | None) -> tuple[int, int]:
        """Read the next batch and hand it to `pool`: up to `depth` batches are applied at once, on
        connections of their own; with all of them busy the oldest is waited for first. The read
        waits up to `block_ms` for events only when nothing is in flight; a read that finds none
        waits for every batch in flight, so an idle writer waits in Redis, never in a loop.
        Entries read while a failure happened stay pending: `_recover` makes the next read start
        with them, and such own pending entries are written here, synchronously, once nothing is
        in flight (nothing in flight may be read twice). Returns (entries read, events written
        by the batches that finished)."""
        written = 0
        try:
            if len(inflight) >= self.depth:
                written += inflight.popleft().result()[1]
            entries = self._read(None if inflight else block_ms)
        except BaseException:
            with contextlib.suppress(Exception):  # their own errors, if any, repeat on the retry
                _settled(inflight)
            raise
        self._adapt(len(entries))
        if not entries or self._recover:
            written += _settled(inflight)
            if entries:
                written += self._write(entries)[1]
            return len(entries), written
        inflight.append(pool.submit(entries))
        return len(entries), written

    def _apply(self, group: list[tuple[str, list[Keyed]]], applied: list[str],
               rejected: list[tuple[str, str]]) -> int:
        """Apply `group` in one transaction; refused as data, apply each half (an entry alone
        that is refused goes to `rejected`). Returns the events written."""
        if not group:
            return 0
        rows = ordered_rows([row for _, keyed in group for row in keyed])
        try:
            self.store.apply_rows(rows)
        except HistoryDataError as exc:
            if len(group) == 1:
                rejected.append((group[0][0], str(exc)))
                return 0
            half = len(group) // 2
            return self._apply(group[:half], applied, rejected) + self._apply(group[half:], applied, rejected)
        applied.extend(eid for eid, _ in group)
        self.written += len(rows)
        self.batches += 1
        return len(rows)

    def _settle(self, applied: list[str], rejected: list[tuple[str, str]], raws: dict[str, Any]) -> None:
        """One MULTI: park the rejected entries, acknowledge and delete them and the applied
        ones, stamp the progress hash."""
        if not applied and not rejected:
            return
        ids = applied + [eid for eid, _ in rejected]
        with self.connection.pipeline(transaction=True) as pipe:
            for eid, error in rejected:
                if raws.get(eid):
                    deadletters.park(pipe, eid, _mapping(raws[eid]), error)
            pipe.xack(keys.EVENTS_STREAM, keys.HISTORY_GROUP, *ids)
            pipe.xdel(keys.EVENTS_STREAM, *ids)
            if applied:
                pipe.hset(keys.HISTORY_PROGRESS, "last_write", f"{time.time():.3f}")
            pipe.execute()
        parked = sum(1 for eid, _ in rejected if raws.get(eid))
        if parked:
            self.dead += parked
            for eid, error in rejected:
                if raws.get(eid):
                    log.error("history event %s parked as a dead letter: %s", eid, error)

    def drain(self) -> int:
        """Write everything waiting now (pipelined, as the background loop; entries idle at
        another consumer for `claim_idle` are claimed first); returns the number of events written."""
        total = 0
        self._claimed_at = float("-inf")
        with _Applier(self._write, self.depth) as pool:
            inflight: deque[Future[Written]] = deque()
            try:
                while True:
                    taken, written = self._step(pool, inflight, None)
                    total += written
                    if not taken and not inflight:
                        return total
            finally:  # an error while reading: let the batches in flight finish
                with contextlib.suppress(Exception):
                    _settled(inflight)

    def backlog(self) -> int:
        """Events not yet in PostgreSQL."""
        return int(self.connection.xlen(keys.EVENTS_STREAM))

    # ---- background thread ---------------------------------------------------------------
    def start(self, interval: float = 0.5) -> None:
        """Write in a daemon thread until `stop()`: batches back to back while events wait; when
        none do, wait for the next one in Redis (up to `interval` at a time; a failure backs off
        from `interval` to 10 s)."""
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="history-writer",
                                        daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        block_ms = max(1, int(interval * 1000))
        delay = interval
        with _Applier(self._write, self.depth) as pool:
            inflight: deque[Future[Written]] = deque()
            while not self._stop.is_set() or self._flushing:
                stopping = self._stop.is_set()  # with a flush asked for: read until nothing is left
                try:
                    taken, _ = self._step(pool, inflight, None if stopping else block_ms)
                    self.last_error = None
                    delay = interval
                    if stopping and not taken and not inflight:
                        self._flushing = False  # flushed: stop() need not drain again
                        self.flushed = True
                    elif taken < self.batch and self.linger and not stopping:
                        self._stop.wait(self.linger)  # a trickle: let a few more events gather
                    continue
                except (StoreUnavailable, redis.RedisError) as exc:
                    if self.last_error != str(exc):
                        log.warning("history writes paused: %s (events wait in Redis)", exc)
                    self.last_error = str(exc)
                    self._report_error(str(exc))
                except Exception as exc:  # a bug must not end history for this process: log, back off
                    log.exception("history writer: unexpected error")
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._report_error(self.last_error)
                self._flushing = False  # stopping: stop() tries once more, then leaves the rest in Redis
                self._recover = True
                self._blocker_id = None  # its connection may be a new one now
                self.size = self.batch
                self._stop.wait(delay)
                delay = min(max(delay * 2, interval), 10.0)
            with contextlib.suppress(Exception):  # stop() flushes what it left
                _settled(inflight)

    def _report_error(self, error: str) -> None:
        """Tell other processes (health) why this writer cannot write; best effort (Redis may be
        what is down)."""
        with contextlib.suppress(redis.RedisError):
            self.connection.hset(keys.HISTORY_PROGRESS, mapping={"last_error": error[:500],
                                                                 "last_error_at": f"{time.time():.3f}"})

    def stop(self, flush: bool = True) -> None:
        """Stop the thread; with `flush`, write what is waiting first: the background loop reads on
        until the stream is empty (pipelined, `depth` batches at once), and if it could not, one
        more `drain` tries.

        A consumer that holds no pending entries leaves the group; one that does stays, and
        another writer claims its entries after `claim_idle`.
        """
        self._flushing, self.flushed = flush and self._thread is not None, False
        self._stop.set()
        if self._blocker_id is not None:  # wake a read waiting for events
            with contextlib.suppress(redis.RedisError):
                self.connection.client_unblock(self._blocker_id)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._flushing = False
        if self._blocker is not None:
            self._blocker.connection_pool.disconnect()
            self._blocker, self._blocker_id = None, None
        try:
            if flush and not self.flushed:  # the loop did not get to the end of the stream
                self.drain()
            if self._group_ready:
                pending = self.connection.xpending_range(keys.EVENTS_STREAM, keys.HISTORY_GROUP, "-", "+", 1,
                                                         consumername=self.consumer)
                if not pending:
                    self.connection.xgroup_delconsumer(keys.EVENTS_STREAM, keys.HISTORY_GROUP, self.consumer)
        except (StoreUnavailable, redis.RedisError) as exc:
            log.warning("history not flushed at stop: %s (events stay in Redis)", exc)
