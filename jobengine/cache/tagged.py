"""A tagged TTL cache in Redis.

    cache = TaggedCache(connection)
    stats = cache.remember("job_stats", 1800, compute_stats, tags=["stats"])
    cache.flush_tag("stats")             # every entry tagged "stats" is gone

Entries are `jobengine:cache:{name}` strings (pickled values, or JSON); each tag is a Redis set
of the entry keys carrying it. An invalidation that lands while a value is being computed wins:
`remember` claims the key with a placeholder, WATCHes it, and stores its value only if nothing
deleted or replaced the key meanwhile, so a value read before a transition is never cached
after it. `shared` computes a value once per TTL for every process reading it (a Redis lock
picks the one that computes; the others get the previous value, or wait for the new one); a
flush of one of its tags while it computes makes it compute again before storing.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import redis
from redis.exceptions import LockError, WatchError

from jobengine import keys

T = TypeVar("T")
PENDING = b"\x00pending:"  # placeholder of a value being computed
PENDING_MS = 30_000
TAG_SLACK = 60  # a tag set outlives its longest-lived entry by this many seconds
_MISS = object()


class TaggedCache:
    """remember / get / put / forget / flush_tag / shared, all in Redis."""

    def __init__(self, connection: redis.Redis, *, serializer: Literal["pickle", "json"] = "pickle",
                 trim_at: int = 10_000) -> None:
        self.connection = connection
        self.serializer = serializer
        self.trim_at = trim_at

    # ---- values ----------------------------------------------------------------------------
    def _dumps(self, value: Any) -> bytes:
        if self.serializer == "json":
            return b"J" + json.dumps(value, separators=(",", ":")).encode()
        return b"P" + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def _loads(raw: object) -> Any:
        """The value, or _MISS for no entry, a placeholder or an unreadable entry."""
        if not isinstance(raw, bytes) or not raw or raw.startswith(PENDING):
            return _MISS
        try:
            if raw[:1] == b"J":
                return json.loads(raw[1:])
            if raw[:1] == b"P":
                return pickle.loads(raw[1:])
        except Exception:  # written by another version of the code: treat as a miss
            return _MISS
        return _MISS

    def get(self, name: str, default: Any = None) -> Any:
        value = self._loads(self.connection.get(keys.cache_key(name)))
        return default if value is _MISS else value

    def put(self, name: str, value: Any, ttl: float, tags: Iterable[str] = ()) -> None:
        key = keys.cache_key(name)
        tags = list(tags)
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.set(key, self._dumps(value), px=_ms(ttl))
            for tag in tags:
                pipe.sadd(keys.cache_tag_key(tag), key)
            pipe.execute()
        self._extend_tags(tags, ttl)

    def forget(self, name: str) -> bool:
        return bool(self.connection.delete(keys.cache_key(name)))

    # ---- remember ----------------------------------------------------------------------------
    def remember(self, name: str, ttl: float, fn: Callable[[], T], tags: Iterable[str] = ()) -> T:
        """The cached value of `name`, else `fn()` stored for `ttl` seconds under `tags`.

        A hit costs one GET. A miss costs three more round trips (claim, WATCH, store); if the
        key is invalidated while `fn` runs, the fresh value is returned but not stored.
        """
        key = keys.cache_key(name)
        value = self._loads(self.connection.get(key))
        if value is not _MISS:
            return value
        tags = list(tags)
        tag_keys = [keys.cache_tag_key(t) for t in tags]
        with self.connection.pipeline(transaction=True) as pipe:  # atomic against flush_tag's RENAME
            pipe.set(key, PENDING + uuid.uuid4().hex.encode(), nx=True, px=PENDING_MS)
            for tag_key in tag_keys:
                pipe.sadd(tag_key, key)
                pipe.ttl(tag_key)
                pipe.scard(tag_key)
            claimed = pipe.execute()
        stale_tags = [tk for i, tk in enumerate(tag_keys) if claimed[2 + 3 * i] < ttl + TAG_SLACK // 2]
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.watch(key)
            try:
                result = fn()
            except BaseException:
                if claimed[0]:  # drop our placeholder unless something replaced it meanwhile
                    pipe.multi()
                    pipe.delete(key)
                    with contextlib.suppress(WatchError):
                        pipe.execute()
                raise
            pipe.multi()
            pipe.set(key, self._dumps(result), px=_ms(ttl))
            for tag_key in stale_tags:
                pipe.expire(tag_key, int(ttl) + TAG_SLACK)
            try:
                pipe.execute()
                stale_tags = []
            except WatchError:
                pass  # invalidated (or stored by another reader) meanwhile: do not cache
        for tag_key in stale_tags:
            self.connection.expire(tag_key, int(ttl) + TAG_SLACK)
        for i, tag_key in enumerate(tag_keys):
            if claimed[3 + 3 * i] > self.trim_at:
                self.trim_tag(tag_key)
        return result

    # ---- tags ----------------------------------------------------------------------------
    def flush_tag(self, tag: str) -> int:
        """Delete every entry tagged `tag`; returns how many keys were deleted."""
        tag_key = keys.cache_tag_key(tag)
        doomed = f"{tag_key}:flushing:{uuid.uuid4().hex}"
        self.connection.incr(keys.cache_flushes_key(tag))  # first: a `shared` computing now retries
        try:
            self.connection.rename(tag_key, doomed)  # later entries start a new set
        except redis.ResponseError:
            return 0  # no such tag set
        deleted = 0
        cursor = 0
        while True:
            cursor, members = self.connection.sscan(doomed, cursor, count=500)
            if members:
                deleted += int(self.connection.delete(*members))
            if cursor == 0:
                break
        self.connection.delete(doomed)
        return deleted

    def trim_tag(self, tag_key: str, sample: int = 1000) -> int:
        """Drop members of a tag set whose entries have expired (bounded work per call)."""
        members: list[bytes] = self.connection.srandmember(tag_key, sample) or []  # type: ignore[assignment]
        if not members:
            return 0
        with self.connection.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(member)
            alive = pipe.execute()
        gone = [m for m, ok in zip(members, alive, strict=True) if not ok]
        if gone:
            self.connection.srem(tag_key, *gone)
        return len(gone)

    def _extend_tags(self, tags: list[str], ttl: float) -> None:
        if not tags:
            return
        tag_keys = [keys.cache_tag_key(t) for t in tags]
        with self.connection.pipeline(transaction=False) as pipe:
            for tag_key in tag_keys:
                pipe.ttl(tag_key)
            current = pipe.execute()
        short = [tk for tk, left in zip(tag_keys, current, strict=True) if left < ttl + TAG_SLACK // 2]
        if short:
            with self.connection.pipeline(transaction=False) as pipe:
                for tag_key in short:
                    pipe.expire(tag_key, int(ttl) + TAG_SLACK)
                pipe.execute()

    # ---- shared ----------------------------------------------------------------------------
    def shared(self, name: str, ttl: float, fn: Callable[[], T], *, tags: Iterable[str] = (),
               stale_for: float | None = None, wait: float = 10.0) -> T:
        """`fn()` computed at most once per `ttl` seconds across every process reading `name`.

        On a miss one process (holding a Redis lock) computes; the others return the previous
        value (kept `stale_for` seconds, default 30 x ttl) or, when there is none yet, wait up to
        `wait` seconds for the new one and compute it themselves after that.
        """
        key = keys.cache_key(name)
        stale_key = f"{key}:stale"
        value = self._loads(self.connection.get(key))
        if value is not _MISS:
            return value
        tags = list(tags)
        stale_for = stale_for if stale_for is not None else max(ttl * 30, 5.0)
        lock = self.connection.lock(f"{key}:lock", timeout=max(wait, 5.0), blocking=False)
        deadline = time.monotonic() + wait
        while True:
            if lock.acquire(blocking=False):
                try:
                    value = self._loads(self.connection.get(key))
                    if value is not _MISS:  # stored by the previous holder since our last look
                        return value
                    result = self._store_shared(key, ttl, stale_for, fn, tags)
                    self._extend_tags(tags, stale_for)
                    return result
                finally:
                    with contextlib.suppress(LockError):  # expired while computing: someone else's now
                        lock.release()
            fresh, previous = self.connection.mget([key, stale_key])
            for raw in (fresh, previous):
                value = self._loads(raw)
                if value is not _MISS:
                    return value
            if time.monotonic() > deadline:
                return fn()
            time.sleep(0.005 + random.random() * 0.01)

    def _store_shared(self, key: str, ttl: float, stale_for: float, fn: Callable[[], T], tags: list[str]) -> T:
        """`fn()` stored as `shared`'s fresh and stale entries. If one of `tags` is flushed while
        it runs (WATCHed flush counters), the value may predate what the flush announced (a retry
        read half-way): it is computed again and that one is stored."""
        stale_key = f"{key}:stale"
        watched = [keys.cache_flushes_key(tag) for tag in tags]
        for attempt in (1, 2):
            with self.connection.pipeline(transaction=True) as pipe:
                if watched and attempt == 1:
                    pipe.watch(*watched)
                result = fn()
                data = self._dumps(result)
                pipe.multi()
                pipe.set(key, data, px=_ms(ttl))
                pipe.set(stale_key, data, px=_ms(stale_for))
                for tag in tags:
                    pipe.sadd(keys.cache_tag_key(tag), key, stale_key)
                try:
                    pipe.execute()
                except WatchError:
                    continue
                return result
        raise AssertionError("unreachable")  # pragma: no cover


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
