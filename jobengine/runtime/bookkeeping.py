"""What a worker records for one job transition, appended to a pipeline it already sends.

Every worker class calls `record` inside the pipeline (or script) that carries RQ's own
bookkeeping for the job, so history, metrics and cache invalidation cost no extra round trip.
"""

from __future__ import annotations

from typing import Any

from rq.exceptions import AbandonedJobError
from rq.utils import utcformat

from jobengine import keys
from jobengine.cache import invalidate_job_status
from jobengine.history.events import add_event
from jobengine.metrics import record_metrics
from jobengine.runtime.records import abandoned
from jobengine.types import EventKind


def record(pipe: Any, kind: EventKind, job_id: str, queue: str, **details: Any) -> None:
    """Append one transition (started, finished, retry, failed, stopped, deferred...): its history
    event, its counters and per-minute buckets, and the deletion of the job's cached status."""
    add_event(pipe, kind, job_id, queue, **details)
    record_metrics(pipe, kind, queue, details)
    invalidate_job_status(pipe, job_id)


class Recorder:
    """Collects what `record` writes for a batch of jobs, merged, for one MULTI block.

    `record` (and a worker's own job counters) only ever increment counters, set their expiry,
    delete cached statuses and append stream entries. Many jobs touch the same counters, so the
    increments are summed per key and field, each key's expiry and each deletion is sent once,
    and the stream entries go out one by one, in order. Inside MULTI the outcome equals sending
    every command as it came; the replies of merged commands are not kept. Use a real pipeline
    for any other command.
    """

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str, str | None], float] = {}
        self._expires: dict[str, int] = {}
        self._deletes: dict[str, None] = {}
        self._entries: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self._sums) + len(self._expires) + len(self._deletes) + len(self._entries)

    @property
    def last_entry(self) -> int:
        """The position of the stream entry added last (see `retract`)."""
        return len(self._entries) - 1

    def retract(self, position: int) -> None:
        """Leave out a stream entry not sent yet (its content travels in a later entry)."""
        self._entries[position] = ()

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        slot = ("HINCRBY", name, key)
        self._sums[slot] = self._sums.get(slot, 0) + amount

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> None:
        slot = ("HINCRBYFLOAT", name, key)
        self._sums[slot] = self._sums.get(slot, 0.0) + float(amount)

    def incr(self, name: str, amount: int = 1) -> None:
        slot = ("INCRBY", name, None)
        self._sums[slot] = self._sums.get(slot, 0) + amount

    def expire(self, name: str, seconds: int) -> None:
        self._expires[name] = int(seconds)

    def delete(self, *names: str) -> None:
        self._deletes.update(dict.fromkeys(names))

    def xadd(self, name: str, fields: dict[str, Any]) -> None:
        self._entries.append(("XADD", name, "*", *[item for pair in fields.items() for item in pair]))

    def commands(self) -> list[tuple[Any, ...]]:
        """The merged commands: sums, then expiries, then one DEL, then the stream entries."""
        out: list[tuple[Any, ...]] = [
            (op, name, repr(total)) if key is None
            else (op, name, key, repr(total) if op == "HINCRBYFLOAT" else int(total))
            for (op, name, key), total in self._sums.items()
        ]
        out += [("EXPIRE", name, seconds) for name, seconds in self._expires.items()]
        if self._deletes:
            out.append(("DEL", *self._deletes))
        return out + [entry for entry in self._entries if entry]


def record_abandoned_once(connection: Any, job: Any, run: str, sweeper: str) -> bool:
    """Append the `failed` event of a run RQ's cleanup found abandoned, unless someone already did
    (`run`: the run's started_at as the job hash holds it); True when this call recorded it."""
    if not connection.set(keys.abandoned_recorded_key(job.id, run), 1, nx=True, ex=7 * 24 * 3600):
        return False
    with connection.pipeline(transaction=False) as pipe:
        entry = abandoned(job, sweeper)
        record(pipe, entry.kind, job.id, job.origin, **entry.fields)
        pipe.execute()
    return True


def abandoned_job_recorder(connection: Any, worker_name: str) -> Any:
    """An RQ exception handler that writes the history of jobs RQ finds abandoned.

    A worker that dies (SIGKILL, OOM, a lost machine) cannot record the end of its job. RQ's
    registry sweep (run by every worker's maintenance) moves such a job to the failed registry and
    calls the sweeping worker's exception handlers with `AbandonedJobError`; this one appends the
    job's `failed` event (once: recovery's watch of RQ's sweeps may see the same run), so the
    history and the console stop showing it as processing.
    """
    def handler(job: Any, exc_type: type[BaseException], exc_value: BaseException | None, tb: Any) -> bool:
        if isinstance(exc_type, type) and issubclass(exc_type, AbandonedJobError):
            run = utcformat(job.started_at) if job.started_at else ""
            record_abandoned_once(connection, job, run, worker_name)
        return True  # the next handler runs too

    return handler
