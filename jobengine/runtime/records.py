"""What a worker records when a run ends badly or is put off: pure functions, no I/O.

Each builder returns the event to append (kind and fields, for `bookkeeping.record`), the RQ
status the job ends in (None: it runs again) and the line to log (arguments for `log.info`, or
none). Every worker class calls them, so the messages and fields exist once; the mechanics
(scheduling, RQ's own failure bookkeeping) stay with each worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq.job import Job, JobStatus

from jobengine.retry import RetryDecision, RetryPolicy
from jobengine.runtime.jobinfo import attempt_of, error_details, job_type
from jobengine.types import EventKind

#: The decision for a run that must not be retried by our policy (stopped, or no exception).
NO_RETRY = RetryDecision.give_up("none", "stopped")


@dataclass(frozen=True, slots=True)
class Entry:
    """One transition to record: its event, the status the job ends in, the line to log."""

    kind: EventKind
    fields: dict[str, Any]
    status: JobStatus | None = None  #: FAILED or STOPPED when the job ends here; None when it runs again
    log: tuple[Any, ...] = ()  #: `log.info(*log)`, when not empty


@dataclass(frozen=True, slots=True)
class Deferral:
    """A job put back until its queue may be taken from again (not run, not an attempt)."""

    entry: Entry
    when: datetime  #: when it is due again (whole seconds: the scheduled registry keeps no more)
    deferrals: int  #: how many times it has been deferred, this time included


def decide(policy: RetryPolicy, exc: BaseException | None, attempt: int, stopped: bool) -> RetryDecision:
    """Our policy's verdict on a failed run (a stopped run, or one without exception, is not retried)."""
    return NO_RETRY if stopped or exc is None else policy.decide(exc, attempt)


def failure(job: Job, exc: BaseException | None, decision: RetryDecision, *, worker: str, duration: float,
            stopped: bool = False, exc_string: str = "", started: str | None = None) -> Entry:
    """A failed run: retried by our policy (RETRY, with its message), else by the job's own RQ
    `Retry` (RETRY), else stopped on request (STOPPED) or failed for good (FAILED).

    `started` is the run's start folded into the event (epoch seconds), when its own `started`
    event was not sent."""
    attempt = attempt_of(job)
    kind = job_type(job)
    fields: dict[str, Any] = {"type": kind, "attempt": attempt, "worker": worker, "duration": f"{duration:.6f}"}
    if started is not None:
        fields["started"] = started
    if decision.retry:
        name = type(exc).__name__
        details = error_details(exc, exc_string)  # the message made safe (NUL, surrogates, size)
        fields["delay"] = f"{decision.delay:.3f}"
        fields["message"] = (f"retry {attempt + 1} in {decision.delay:.1f}s ({decision.strategy}) after "
                             f"{name}: {details['error_message']}")
        fields.update(details)
        return Entry(EventKind.RETRY, fields, None, ("job %s (%s) failed attempt %d with %s; retrying in %.1fs (%s)",
                                                     job.id, kind, attempt, name, decision.delay, decision.strategy))
    if stopped:
        fields["message"] = "stopped on request"
        return Entry(EventKind.STOPPED, fields, JobStatus.STOPPED)
    if job.should_retry:  # a plain RQ job with its own Retry(...) settings
        fields["delay"] = job.get_retry_interval()
        fields.update(error_details(exc, exc_string))
        return Entry(EventKind.RETRY, fields)
    fields.update(error_details(exc, exc_string))
    return Entry(EventKind.FAILED, fields, JobStatus.FAILED)


def deferral(job: Job, delay: float, reason: str, *, worker: str, now: float) -> Deferral:
    """A job its queue's gate turned away for `delay` seconds (`reason`: why, e.g. "is at its rate
    limit (5/min)"); `now` is the wall clock (epoch seconds). Logged on its first deferral only."""
    deferrals = int(job.meta.get("deferrals", 0)) + 1
    message = f"deferred {delay:.1f}s: queue {job.origin} {reason}"
    kind = job_type(job)
    entry = Entry(EventKind.DEFERRED, {"type": kind, "delay": f"{delay:.3f}", "worker": worker, "message": message},
                  None, ("job %s (%s) %s", job.id, kind, message) if deferrals == 1 else ())
    return Deferral(entry, datetime.fromtimestamp(math.ceil(now + delay), UTC), deferrals)


def abandoned(job: Job, sweeper: str) -> Entry:
    """A job whose worker died (found by `sweeper`'s registry cleanup): failed for good."""
    return Entry(EventKind.FAILED, {
        "type": job_type(job), "attempt": attempt_of(job), "worker": job.worker_name,
        "error_class": "rq.exceptions.AbandonedJobError",
        "error_message": f"the worker running it ({job.worker_name or 'unknown'}) died; found abandoned by {sweeper}",
    }, JobStatus.FAILED)


#: How a dead worker's job came back (see `recovered`).
HELD, LOST, UNKNOWN = "held", "lost", "unknown"


def recovered(job: Job, worker: str, how: str, sweeper: str) -> Entry:
    """A job a dead `worker` held, back at the front of its queue, attempts unchanged: `how` is
    HELD (not started), LOST (it ran; its completion died with the worker: it runs again) or
    UNKNOWN (one of the two: the worker died within its first `hold` of running it)."""
    text = {
        HELD: f"back on its queue: worker {worker} died before running it (not an attempt)",
        LOST: f"runs again: it ran on worker {worker}, whose death lost its completion (at-least-once)",
        UNKNOWN: f"back on its queue: worker {worker} died holding it (not run yet, or run with its "
                 "completion lost: it runs again, at-least-once)",
    }[how]
    message = f"{text}; recovered by {sweeper}"
    kind = job_type(job)
    return Entry(EventKind.REQUEUED, {"type": kind, "attempt": attempt_of(job), "worker": worker, "message": message},
                 None, ("job %s (%s) %s", job.id, kind, message))


def abandoned_run(job: Job, worker: str, decision: RetryDecision, abandonments: int, sweeper: str) -> Entry:
    """The run a dead `worker` was running, by the abandoned strategy: retried (REQUEUED when
    straight back to its queue, else RETRY), or failed for good once it has killed its worker
    `abandonments` times (a poison job)."""
    attempt = attempt_of(job)
    kind = job_type(job)
    times = f"{abandonments} time{'s' if abandonments != 1 else ''}"
    fields: dict[str, Any] = {"type": kind, "attempt": attempt, "worker": worker,
                              "error_class": "rq.exceptions.AbandonedJobError"}
    if decision.retry:
        when = "now" if decision.delay == 0 else f"in {decision.delay:.1f}s"
        fields["message"] = (f"abandoned: worker {worker} died while running it ({times} so far); retry {attempt + 1} "
                             f"{when} ({decision.strategy}); recovered by {sweeper}")
        if decision.delay:
            fields["delay"] = f"{decision.delay:.3f}"
        return Entry(EventKind.RETRY if decision.delay else EventKind.REQUEUED, fields, None,
                     ("job %s (%s) %s", job.id, kind, fields["message"]))
    fields["error_message"] = (f"killed its worker {times} (last: {worker}, found by {sweeper}); not retried "
                               f"({decision.reason})")
    return Entry(EventKind.FAILED, fields, JobStatus.FAILED,
                 ("job %s (%s) failed for good: %s", job.id, kind, fields["error_message"]))
