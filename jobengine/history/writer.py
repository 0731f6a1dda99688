"""Job history off the hot path: events wait in a Redis stream, the writer copies them to PostgreSQL.

`HistoryWriter` reads the stream (format: history/events.py) through a consumer group in batches,
applies each batch in one PostgreSQL transaction (idempotent: event ids are unique), then
acknowledges and deletes the entries. While PostgreSQL is down the events wait in Redis and
reach PostgreSQL once it is back; a writer that died leaves its pending entries to be claimed
by another after `claim_idle` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import redis

from jobengine import keys
from jobengine.errors import StoreUnavailable
from jobengine.history.events import parse_events
from jobengine.store.protocol import HistoryStore

log = logging.getLogger("jobengine.history")


class HistoryWriter:
    """Copies events from the Redis stream to PostgreSQL in batches."""

    def __init__(self, connection: redis.Redis, store: HistoryStore, *, batch: int = 500,
                 consumer: str | None = None, claim_idle: float = 30.0) -> None:
        self.connection = connection
        self.store = store
        self.batch = batch
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.claim_idle_ms = int(claim_idle * 1000)
        self._group_ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
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
        """Own pending entries first (a failed write), then entries idle elsewhere, then new ones."""
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

        Raises StoreUnavailable when PostgreSQL refuses the batch; the entries stay pending.
        """
        entries = [(eid.decode() if isinstance(eid, bytes) else eid, raw)
                   for eid, raw in self._read() if raw]
        if not entries:
            return 0
        events = [event for eid, raw in entries for event in parse_events(eid, raw)]
        self.store.apply_events(events)
        ids = [eid for eid, _ in entries]
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.xack(keys.EVENTS_STREAM, keys.HISTORY_GROUP, *ids)
            pipe.xdel(keys.EVENTS_STREAM, *ids)
            pipe.execute()
        self.written += len(events)
        return len(events)

    def drain(self) -> int:
        """Write everything waiting now; returns the number of events written."""
        total = 0
        while n := self.drain_once():
            total += n
        return total

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
                written = self.drain_once()
                self.last_error = None
                delay = 0 if written >= self.batch else interval
            except (StoreUnavailable, redis.RedisError) as exc:
                if self.last_error != str(exc):
                    log.warning("history writes paused: %s (events wait in Redis)", exc)
                self.last_error = str(exc)
                delay = min(max(delay * 2, interval), 10.0)
            self._stop.wait(delay)

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
