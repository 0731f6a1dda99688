"""The fast worker's side of worker death (a mixin of `FastWorker`): what it writes so that its
death can be recovered (`runtime/recovery.py`), and what it does when it learns it was declared
dead while alive (a host cut off from Redis longer than `recovery_after`).

- `dequeue.lua` writes every job taken into the worker's held hash; a job running past `hold`
  (and a suspect job, before it runs) is marked `running` with the next block; finished and
  released jobs leave the hash with the block that records them. No extra round trip per job.
- Each heartbeat refreshes the alive key (TTL `recovery_after`), stamps the held hash, and
  registers the worker with RQ again if its registration vanished (a Redis reset, a recovery).
- Blocks go out on connections that WATCH the worker's fence key (see `transport.Block`):
  recovery deletes it, so a block written before the worker knew (kept in a socket buffer while
  the link was down) is refused whole: no second finish for a job already recovered and run
  elsewhere. The worker logs "completion discarded, job was recovered", drops what it held and
  rejoins as a new life.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import redis
from rq.worker_registration import register as rq_register

from jobengine import keys
from jobengine.config import Settings
from jobengine.runtime.bookkeeping import Recorder
from jobengine.runtime.outcomes import Held
from jobengine.runtime.recovery import Recovery, parse_held
from jobengine.runtime.transport import Fenced

if TYPE_CHECKING:
    from rq.job import Job

log = logging.getLogger("jobengine.worker")


class Liveness:
    """Held hash, heartbeat, fence and rejoin (a mixin of `FastWorker`)."""

    name: str
    key: str
    worker_ttl: int
    max_batch: int
    connection: redis.Redis
    settings: Settings
    recovery: Recovery
    _lock: threading.Lock
    _flush_lock: threading.Lock
    _pending: Any
    _recorder: Recorder
    _ended: list[Job]
    _finished: list[Job]
    _finish_args: tuple[Any, ...]
    _after: list[tuple[str, str]]
    _in_hand: deque[Held]
    _ahead: Any
    _running: Held | None
    _marked: Held | None
    _batch: int
    _life: int
    _held_key: str
    _fence_key: str
    _fence_token: str
    _fenced: threading.Event
    _blocks: redis.Redis

    if TYPE_CHECKING:  # provided by RQ's BaseWorker
        def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None: ...
        def serialize(self) -> dict[str, Any]: ...

    def _mark(self, item: Held) -> None:
        """Mark `item` as the job running (in the held hash, with the next block): the recovery
        of this worker's death then knows which held job it was running."""
        with self._lock:
            if self._running is item and self._marked is not item:
                self._pending.hset(self._held_key, "running", item.member)
                self._marked = item

    def _join(self) -> None:
        """Register for recovery: fence token, alive key, heartbeat stamp (an earlier life under
        this name that died holding jobs is recovered first)."""
        alive = keys.worker_alive_key(self.name)
        if self.connection.exists(self._held_key) and not self.connection.exists(alive):
            self.recovery.recover_worker(self.name)
        with self.connection.pipeline() as pipe:
            pipe.set(self._fence_key, self._fence_token)
            pipe.set(alive, self._life, px=int(max(3.0, self.settings.recovery_after) * 1000))
            pipe.hset(self._held_key, "beat", f"{time.time():.3f}")
            pipe.sadd(keys.WORKERS, self.name)
            pipe.execute()

    def _leave(self) -> None:
        """A clean exit with nothing held: off the workers recovery watches."""
        try:
            with self.connection.pipeline() as pipe:
                pipe.delete(self._held_key, self._fence_key, keys.worker_alive_key(self.name))
                pipe.srem(keys.WORKERS, self.name)
                pipe.execute()
        except redis.RedisError as exc:
            log.error("worker %s could not unregister (recovery will): %s", self.name, exc)

    def _beat(self) -> None:
        """RQ's heartbeat, our alive key and stamp, and RQ's registration again if it vanished
        (a Redis reset, or a recovery while this worker was cut off)."""
        with self.connection.pipeline() as pipe:
            # First, before this beat's own writes: is RQ's registration whole? (A block written
            # after a reset may already have re-created the worker hash with a field or two.)
            pipe.sismember(keys.RQ_WORKERS, self.key)
            pipe.hexists(self.key, "birth")
            self.heartbeat(pipeline=pipe)
            pipe.set(keys.worker_alive_key(self.name), self._life,
                     px=int(max(3.0, self.settings.recovery_after) * 1000))
            pipe.hset(self._held_key, "beat", f"{time.time():.3f}")
            pipe.sadd(keys.WORKERS, self.name)
            pipe.hlen(self._held_key)
            replies = pipe.execute()
        if not (replies[0] and replies[1]):
            log.warning("worker %s: its RQ registration was gone; registering again", self.name)
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())  # type: ignore[arg-type]
                pipe.expire(self.key, self.worker_ttl + 60)
                rq_register(self, pipe)  # type: ignore[arg-type]
                pipe.execute()
        if replies[-1] > 2 * self.max_batch + 3:
            self._compact()

    def _compact(self) -> None:
        """Drop held entries whose started-registry entry is gone (jobs ended by failure paths)."""
        held, _ = parse_held(self.connection.hgetall(self._held_key))
        with self.connection.pipeline(transaction=False) as pipe:
            for h in held:
                pipe.zscore(keys.rq_started_key(h.queue), h.member)
            scores = pipe.execute()
        gone = [h.member for h, score in zip(held, scores, strict=True) if score is None]
        if gone:
            self.connection.hdel(self._held_key, *gone)

    def _check_fence(self) -> None:
        """Raise Fenced if this worker was declared dead (its fence key no longer holds its token)."""
        token = self.connection.get(self._fence_key)
        if token is None or (token.decode() if isinstance(token, bytes) else token) != self._fence_token:
            self._fenced.set()
            raise Fenced(f"worker {self.name} was declared dead while it waited for Redis")

    def _discarded(self, jobs: list[Job]) -> None:
        for job in jobs:
            log.warning("job %s: completion discarded, job was recovered (worker %s was declared dead)",
                        job.id, self.name)

    def _refused(self, sent: Any) -> None:
        """A block refused by the fence: this worker was declared dead and its jobs recovered."""
        self._discarded(sent.finished + sent.ended)
        if sent.life == self._life:
            self._fenced.set()

    def _rejoin(self) -> None:
        """After being declared dead (its jobs recovered elsewhere): drop what it holds and what
        it did not write, and register as a new life."""
        with self._flush_lock, self._lock:
            discarded = self._finished + self._ended
            ask, self._ahead = self._ahead, None
            self._in_hand.clear()
            self._pending, self._recorder = self.connection.pipeline(), Recorder()
            self._ended, self._finished, self._finish_args, self._after = [], [], (), []
            self._marked, self._batch = None, 1
            self._life += 1
            if ask is not None and ask.sent is not None:
                ask.sent.block.discard()
            self._discarded(discarded)
            log.warning("worker %s was declared dead and its jobs recovered elsewhere (or Redis lost its data): "
                        "dropping what it held, rejoining", self.name)
            self._blocks.connection_pool.disconnect()
            self._fence_token = os.urandom(8).hex()
            self._join()
            self._beat()
            self._fenced.clear()
