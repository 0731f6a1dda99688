"""May this worker take from queue Q now, and if not, until when: one answer for every worker.

Two questions, one place. Per job, after dequeue and before the run: `admit` takes the job's
slot under its queue's rate limit, or says how many seconds until one opens (a slot opening
within IN_HAND_WAIT is waited for with the job in hand: `wait_in_hand`). Per queue: a worker that
deferred a job `hold`s its queue and leaves it alone until then (`closed`, `opens_in`), while it
keeps serving the other lanes. Rate limits today; pauses will answer here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jobengine.ratelimit import RateLimiter
from jobengine.runtime.jobinfo import IN_HAND_WAIT


class QueueGate:
    """One worker's gate over its queues (not shared between workers: `hold` is per worker)."""

    __slots__ = ("_held", "limiter")

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter  #: None: no rate limits (a worker built by RQ's CLI without settings)
        self._held: dict[str, float] = {}  # queue -> monotonic time this worker may take from it again

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
        """The queues this worker may not take from now -> monotonic time they open again."""
        if self._held:
            clock = time.monotonic()
            self._held = {q: until for q, until in self._held.items() if until > clock}
        return self._held

    def opens_in(self) -> float | None:
        """Seconds until the first closed queue opens (None: none is closed)."""
        closed = self.closed()
        return min(closed.values()) - time.monotonic() if closed else None
