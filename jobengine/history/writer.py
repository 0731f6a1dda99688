"""Job history off the hot path: events wait in a Redis stream, the writer copies them to PostgreSQL.

`HistoryWriter` reads the stream (format: history/events.py) through a consumer group in batches,
applies each batch in one PostgreSQL transaction (idempotent: event ids are unique), then
acknowledges and deletes the entries. While PostgreSQL is down the events wait in Redis and
reach PostgreSQL once it is back; a writer that died leaves its pending entries to be claimed
by another after `claim_idle` seconds.

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
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from jobengine import keys
from jobengine.errors import HistoryDataError, StoreUnavailable
from jobengine.history import deadletters
from jobengine.history.events import parse_events
from jobengine.models import JobEvent
from jobengine.store.protocol import HistoryStore

log = logging.getLogger("jobengine.history")


class HistoryWriter:
    """Copies events from the Redis stream to PostgreSQL in batches."""

    def __init__(self, connection: redis.Redis, store: HistoryStore, *, batch: int = 500,
                 consumer: str | None = None, claim_idle: float = 30.0,
                 prepare: Callable[[], object] | None = None) -> None:
        """`prepare` runs before each batch is applied (the engine's: apply migrations not yet
        applied; it may raise StoreUnavailable, and then the batch waits)."""
        self.connection = connection
        self.store = store
        self.batch = batch
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.claim_idle_ms = int(claim_idle * 1000)
        self._group_ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepare = prepare
        self.written = 0
        self.dead = 0  #: entries this writer parked as dead letters
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

    def _read(self) -> list[tuple[str, Any]]:
        """Own pending entries first (a failed write), then entries idle elsewhere, then new ones.
        A missing group (NOGROUP: Redis lost its data) is created again."""
        try:
            return self._read_entries()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("history consumer group %s is gone (Redis reset?): creating it again", keys.HISTORY_GROUP)
            self._group_ready = False
            return self._read_entries()

    def _read_entries(self) -> list[tuple[str, Any]]:
        self._ensure_group()
        got: Any = self.connection.xreadgroup(keys.HISTORY_GROUP, self.consumer,  # RESP2: [[stream, entries]]
                                              {keys.EVENTS_STREAM: "0"}, count=self.batch)
        if got and got[0][1]:
            return got[0][1]
        claimed: Any = self.connection.xautoclaim(keys.EVENTS_STREAM, keys.HISTORY_GROUP, self.consumer,
                                                  self.claim_idle_ms, "0-0", count=self.batch)
        if claimed and claimed[1]:
            return claimed[1]
        got = self.connection.xreadgroup(keys.HISTORY_GROUP, self.consumer,
                                         {keys.EVENTS_STREAM: ">"}, count=self.batch)
        return got[0][1] if got else []

    def drain_once(self) -> int:
        """Write one batch; returns how many events reached PostgreSQL (0 when none waited).

        Entries PostgreSQL refuses as data, or that do not parse, become dead letters (counted
        in `dead`). Raises StoreUnavailable when PostgreSQL cannot take the batch; what is not
        written yet stays pending (what was, is acknowledged)."""
        return self._batch()[1]

    def _batch(self) -> tuple[int, int]:
        """drain_once's work: (entries taken off the stream, events written)."""
        entries = [(eid.decode() if isinstance(eid, bytes) else eid, raw) for eid, raw in self._read()]
        if not entries:
            return 0, 0
        raws = dict(entries)
        parsed: list[tuple[str, list[JobEvent]]] = []
        rejected: list[tuple[str, str]] = []
        for eid, raw in entries:
            if not raw:  # deleted while pending (XDEL by another writer): nothing to write
                rejected.append((eid, ""))
                continue
            try:
                parsed.append((eid, parse_events(eid, raw)))
            except (KeyError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                rejected.append((eid, f"unreadable event: {type(exc).__name__}: {exc}"))
        applied: list[str] = []
        try:
            if parsed and self._prepare is not None:
                self._prepare()
            return len(entries), self._apply(parsed, applied, rejected)
        finally:
            self._settle(applied, rejected, raws)

    def _apply(self, group: list[tuple[str, list[JobEvent]]], applied: list[str],
               rejected: list[tuple[str, str]]) -> int:
        """Apply `group` in one transaction; refused as data, apply each half (an entry alone
        that is refused goes to `rejected`). Returns the events written."""
        if not group:
            return 0
        events = [event for _, evs in group for event in evs]
        try:
            self.store.apply_events(events)
        except HistoryDataError as exc:
            if len(group) == 1:
                rejected.append((group[0][0], str(exc)))
                return 0
            half = len(group) // 2
            return self._apply(group[:half], applied, rejected) + self._apply(group[half:], applied, rejected)
        applied.extend(eid for eid, _ in group)
        self.written += len(events)
        return len(events)

    def _settle(self, applied: list[str], rejected: list[tuple[str, str]], raws: dict[str, Any]) -> None:
        """One MULTI: park the rejected entries, acknowledge and delete them and the applied
        ones, stamp the progress hash."""
        if not applied and not rejected:
            return
        ids = applied + [eid for eid, _ in rejected]
        with self.connection.pipeline(transaction=True) as pipe:
            for eid, error in rejected:
                if raws.get(eid):
                    deadletters.park(pipe, eid, raws[eid], error)
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
        """Write everything waiting now; returns the number of events written."""
        total = 0
        while True:
            taken, written = self._batch()
            if not taken:
                return total
            total += written

    def backlog(self) -> int:
        """Events not yet in PostgreSQL."""
        return int(self.connection.xlen(keys.EVENTS_STREAM))

    # ---- background thread ---------------------------------------------------------------
    def start(self, interval: float = 0.5) -> None:
        """Drain in a daemon thread every `interval` seconds until `stop()`."""
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="history-writer",
                                        daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        delay = interval
        while not self._stop.is_set():
            try:
                taken, _ = self._batch()
                self.last_error = None
                delay = 0 if taken >= self.batch else interval
            except (StoreUnavailable, redis.RedisError) as exc:
                if self.last_error != str(exc):
                    log.warning("history writes paused: %s (events wait in Redis)", exc)
                self.last_error = str(exc)
                self._report_error(str(exc))
                delay = min(max(delay * 2, interval), 10.0)
            except Exception as exc:  # a bug must not end history for this process: log, back off
                log.exception("history writer: unexpected error")
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._report_error(self.last_error)
                delay = min(max(delay * 2, interval), 10.0)
            self._stop.wait(delay)

    def _report_error(self, error: str) -> None:
        """Tell other processes (health) why this writer cannot write; best effort (Redis may be
        what is down)."""
        with contextlib.suppress(redis.RedisError):
            self.connection.hset(keys.HISTORY_PROGRESS, mapping={"last_error": error[:500],
                                                                 "last_error_at": f"{time.time():.3f}"})

    def stop(self, flush: bool = True) -> None:
        """Stop the thread; with `flush`, try once more to write what is waiting.

        A consumer that holds no pending entries leaves the group; one that does stays, and
        another writer claims its entries after `claim_idle`.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        try:
            if flush:
                self.drain()
            if self._group_ready:
                pending = self.connection.xpending_range(keys.EVENTS_STREAM, keys.HISTORY_GROUP, "-", "+", 1,
                                                         consumername=self.consumer)
                if not pending:
                    self.connection.xgroup_delconsumer(keys.EVENTS_STREAM, keys.HISTORY_GROUP, self.consumer)
        except (StoreUnavailable, redis.RedisError) as exc:
            log.warning("history not flushed at stop: %s (events stay in Redis)", exc)
