"""May this worker take from queue Q now, and if not, until when: one answer for every worker.

Two questions, one place. Per job, after dequeue and before the run: `admit` takes the job's
slot under its queue's rate limit, or says how many seconds until one opens (a slot opening
within IN_HAND_WAIT is waited for with the job in hand: `wait_in_hand`). Per queue: a worker that
deferred a job `hold`s its queue and leaves it alone until then (`closed`, `opens_in`), while it
keeps serving the other lanes. A paused queue (`jobtui pause`, the `keys.PAUSED` hash read at
most every PAUSE_REFRESH seconds) is closed to every worker until it is resumed: its jobs stay
queued, nothing is dequeued from it, and both worker families see a resume within a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from jobengine.keys import PAUSED
from jobengine.ratelimit import RateLimiter
from jobengine.runtime.jobinfo import IN_HAND_WAIT

log = logging.getLogger("jobengine.worker")

PAUSE_REFRESH = 0.25
"""Seconds a worker trusts the paused queues it last read (a pause reaches it within this plus
one idle wait of at most 1 s)."""
RECHECK = "*pause-check*"
"""Not a queue name (queue names have no '*'): a pause-aware gate always lists it in `closed()`
with the time the pauses are read again, so a worker's blocking wait for jobs ends by then
(RQ's own dequeue would otherwise block for minutes on every lane, a paused one included)."""


class QueueGate:
    """One worker's gate over its queues (not shared between workers: `hold` is per worker)."""

    __slots__ = ("_held", "_paused", "_paused_until", "connection", "limiter")

    def __init__(self, limiter: RateLimiter | None = None, connection: redis.Redis | None = None) -> None:
        self.limiter = limiter  #: None: no rate limits (a worker built by RQ's CLI without settings)
        #: Where the paused queues are read (default: the limiter's; None: pauses are not seen)
        self.connection = connection if connection is not None else getattr(limiter, "connection", None)
        self._held: dict[str, float] = {}  # queue -> monotonic time this worker may take from it again
        self._paused: frozenset[str] = frozenset()
        self._paused_until = 0.0  # monotonic time the paused set is read again

    def admit(self, queue: str, job_id: str) -> float | None:
        """None: run the job now (its slot is taken). Else: seconds until `queue` has a slot."""
        return None if self.limiter is None else self.limiter.check(queue, job_id)

    def reason(self, queue: str) -> str:
        """Why `queue` turned a job away, for messages: "is at its rate limit (5/min)"."""
        decision = self.limiter.last.get(queue) if self.limiter is not None else None
        limit = f" ({decision.limit}/min)" if decision is not None and decision.limit is not None else ""
        return f"is at its rate limit{limit}"

    @staticmethod
    def wait_in_hand(delay: float | None, again: Callable[[], float | None],
                     first_wait: Callable[[], object] | None = None) -> float | None:
        """Wait with the job in hand while the slot opens within IN_HAND_WAIT, asking `again`
        after each pause (`first_wait` runs before the first one); the delay left (None: run)."""
        waited = 0.0
        while delay is not None and waited + delay <= IN_HAND_WAIT:
            if not waited and first_wait is not None:
                first_wait()
            time.sleep(max(delay, 0.002))
            waited += max(delay, 0.002)
            delay = again()
        return delay

    def hold(self, queue: str, seconds: float) -> None:
        """This worker leaves `queue` alone for `seconds` (it just deferred a job of it)."""
        self._held[queue] = time.monotonic() + seconds

    def closed(self) -> dict[str, float]:
        """The queues this worker may not take from now -> monotonic time they open again (a
        paused queue: when the pause is read again)."""
        clock = time.monotonic()
        if self._held:
            self._held = {q: until for q, until in self._held.items() if until > clock}
        if self.connection is None:
            return self._held
        paused = self.paused(clock)
        return {**self._held, **dict.fromkeys(paused, self._paused_until), RECHECK: self._paused_until}

    def paused(self, clock: float | None = None) -> frozenset[str]:
        """The paused queues, read from Redis at most every PAUSE_REFRESH seconds (on a Redis
        error the last answer stands: the dequeue that follows reports the outage)."""
        clock = time.monotonic() if clock is None else clock
        if self.connection is not None and clock >= self._paused_until:
            self._paused_until = clock + PAUSE_REFRESH
            try:
                names = self.connection.hkeys(PAUSED)
            except redis.RedisError as exc:
                log.debug("paused queues not read now: %s", exc)
            else:
                paused = frozenset(n.decode() if isinstance(n, bytes) else n for n in names)
                if paused != self._paused:
                    for queue in sorted(paused - self._paused):
                        log.info("queue %s is paused: this worker leaves its jobs queued", queue)
                    for queue in sorted(self._paused - paused):
                        log.info("queue %s is resumed", queue)
                    self._paused = paused
        return self._paused

    def opens_in(self) -> float | None:
        """Seconds until the first closed queue opens (None: none is closed)."""
        closed = self.closed()
        return min(closed.values()) - time.monotonic() if closed else None
