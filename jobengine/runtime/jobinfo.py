"""What both worker families share about a job in hand: its type, its attempt, its error details,
the exception that stops it and the workers' timing constants. A leaf: it imports no worker."""

from __future__ import annotations

import signal
import traceback as tb
from types import TracebackType

from rq.job import Job

from jobengine.retry.policy import dotted_name

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

#: A slot opening within this many seconds is waited for with the job in hand (cheaper and more
#: exact than a trip through the scheduled registry); a longer wait defers the job.
IN_HAND_WAIT = 0.5

#: RQ's worker TTL for our workers: an idle worker heartbeats every 45 s (RQ's default, 420 s,
#: leaves an idle worker silent for 405 s), so a heartbeat older than a minute means trouble.
WORKER_TTL = 60

#: The signal an in-process worker sends itself to stop the job it runs (see `JobStopped`).
STOP_SIGNAL = signal.SIGUSR1


class JobStopped(BaseException):
    """Raised inside an in-process job that an operator stopped (BaseException: jobs can't swallow it)."""


def job_type(job: Job) -> str:
    """The job's type: set by dispatch, else the function's short name (plain RQ jobs)."""
    meta = job.meta or {}
    if meta.get("type"):
        return str(meta["type"])
    try:
        name = job.func_name
    except Exception:  # undeserialisable job
        return "unknown"
    return "unknown" if name is None else name.rpartition(".")[2]


def attempt_of(job: Job) -> int:
    """The number of the run in progress (1 for the first run)."""
    return (job.number_of_retries or 0) + 1


def error_details(exc: BaseException | None, exc_string: str = "") -> dict[str, str]:
    """The error fields of a failure event; without an exception, read from RQ's `exc_string`."""
    if exc is None:
        return {"error_class": "AbandonedJobError" if not exc_string else "Error",
                "error_message": exc_string.strip().splitlines()[-1] if exc_string else "",
                "traceback": exc_string}
    cls = type(exc)
    text = "".join(tb.format_exception(cls, exc, exc.__traceback__))
    return {"error_class": dotted_name(cls), "error_message": str(exc), "traceback": text}
