"""What both worker families share about a job in hand: its type, its attempt, its error details,
the exception that stops it and the workers' timing constants. A leaf: it imports no worker."""

from __future__ import annotations

import logging
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


#: The most characters of an exception's message a failure keeps (the rest: a marker saying how many).
MAX_ERROR_MESSAGE = 10_000
#: The most characters of a traceback a failure keeps: its first and last halves around a marker.
MAX_TRACEBACK = 100_000


def safe_text(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """`text` fit for Redis and PostgreSQL whatever it holds: NUL as `\\x00` and lone surrogates
    as `\\udc80` (backslash escapes), and at most `limit` characters of it; a longer text keeps its
    head (`keep_tail`: its head and its tail) around "… [truncated 4,987,123 chars]"."""
    if len(text) > limit:
        marker = f"… [truncated {len(text) - limit:,} chars]"
        if keep_tail:
            half = limit // 2
            text = f"{text[:half]}\n{marker}\n{text[len(text) - (limit - half):]}"
        else:
            text = text[:limit] + marker
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00") if "\x00" in text else text


class EscapedText(logging.Filter):
    """Lone surrogates in a record's text (a job's error message in RQ's "exception raised while
    executing" line) escaped as `\\udc80`, so no log handler fails to encode the line. Warnings
    and errors only: per-job INFO lines carry reprs (already escaped) and are not formatted twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if not text.isascii():
            safe = text.encode("utf-8", "backslashreplace").decode("utf-8")  # only what UTF-8 cannot hold
            if safe != text:
                record.msg, record.args = safe, None
        return True


def escape_log_text(logger: logging.Logger) -> None:
    """Install `EscapedText` on `logger` once (each worker calls it for RQ's worker logger)."""
    if not any(isinstance(f, EscapedText) for f in logger.filters):
        logger.addFilter(EscapedText())


def exception_message(exc: BaseException) -> str:
    """`str(exc)`, made safe (see `safe_text`); an exception whose `__str__` raises says so."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not lose the failure
        text = f"<{type(exc).__name__}: str() failed>"
    return safe_text(text, MAX_ERROR_MESSAGE)


def format_traceback(exc_info: ExcInfo) -> str:
    """The traceback text of `exc_info` (as RQ's `format_exc_info`), made safe (see `safe_text`)."""
    return safe_text("".join(tb.format_exception(*exc_info)), MAX_TRACEBACK, keep_tail=True)


def error_details(exc: BaseException | None, exc_string: str = "") -> dict[str, str]:
    """The error fields of a failure event; without an exception, read from RQ's `exc_string`.
    Message and traceback are safe whatever the exception holds (NUL, lone surrogates, megabytes)."""
    if exc is None:
        text = safe_text(exc_string, MAX_TRACEBACK, keep_tail=True)
        return {"error_class": "AbandonedJobError" if not exc_string else "Error",
                "error_message": safe_text(exc_string.strip().splitlines()[-1], MAX_ERROR_MESSAGE)
                if exc_string.strip() else "",
                "traceback": text}
    cls = type(exc)
    return {"error_class": dotted_name(cls), "error_message": exception_message(exc),
            "traceback": format_traceback((cls, exc, exc.__traceback__))}
