"""Events -> rows for the history store: log messages, the batch COPY rows, and the per-event
reference form of the apply.

`batch_rows` is what `PostgresStore.apply_events` sends (one COPY row per event, oldest first);
the set-based statements in `sql/queries.sql` fold them per job. `apply_one_by_one` applies the
same events one `apply_event` statement each: the reference the set-based apply is tested against
and the baseline `bench/history_apply.py` measures it against. No psycopg import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from jobengine.models import JobEvent, failure_fingerprint
from jobengine.types import EventKind

Row = dict[str, Any]

_TERMINAL = frozenset({EventKind.FINISHED, EventKind.FAILED, EventKind.CANCELED, EventKind.STOPPED})
_SCHEDULING = frozenset({EventKind.RETRY, EventKind.DEFERRED, EventKind.SCHEDULED})
_REQUEUING = frozenset({EventKind.QUEUED, EventKind.REQUEUED})
_RUN_ENDING = frozenset({EventKind.STARTED, EventKind.FINISHED, EventKind.FAILED})
_LEVELS = {EventKind.FAILED: "error", EventKind.RETRY: "warning", EventKind.STOPPED: "warning",
           EventKind.DEFERRED: "warning"}

# the same, by the kinds' values (the row builders work on plain strings: an Enum's .value is slow)
_TEXT_SCHEDULING = frozenset(k.value for k in _SCHEDULING)
_TEXT_REQUEUING = frozenset(k.value for k in _REQUEUING)
_TEXT_LEVELS = {k.value: level for k, level in _LEVELS.items()}
KINDS = frozenset(k.value for k in EventKind)
"""Every event kind's value."""

BATCH_COLUMNS = ("pos", "event_id", "job_id", "at", "kind", "level", "attempt", "delay", "message", "type",
                 "queue", "priority", "func", "args", "worker", "duration", "scheduled_for", "error_class",
                 "error_message", "traceback", "fingerprint")
"""The columns of the `history_batch` temporary table, in COPY order."""
BATCH_TYPES = ("int4", "text", "text", "timestamptz", "text", "text", "int4", "float8", "text", "text",
               "text", "int2", "text", "text", "text", "float8", "timestamptz", "text", "text", "text", "text")
"""Their PostgreSQL types, for the binary COPY."""


def first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def event_message(event: JobEvent) -> str:
    """The log line for an event: its own message, else a sentence built from its fields."""
    return message_of(event.kind.value, event.message, event.queue, event.attempt, event.duration, event.delay,
                      event.worker, event.error_class, event.error_message)


def message_of(kind: str, message: str | None, queue: str, attempt: int | None, duration: float | None,
               delay: float | None, worker: str | None, error_class: str | None,
               error_message: str | None) -> str:
    """`event_message` from an event's fields (`kind`: its value; the history writer builds rows
    without JobEvents)."""
    if message:
        return message
    if kind == "started":
        run = f"attempt {attempt} started" if attempt else "run started"
        return f"{run} on {worker}" if worker else run
    if kind == "finished":
        return f"finished in {duration:.3f}s" if duration is not None else "finished"
    if kind in _TEXT_REQUEUING:
        return f"{kind} on {queue}"
    if kind == "scheduled":
        return f"scheduled to run in {delay:.1f}s" if delay is not None else "scheduled"
    error = ": ".join(p for p in (error_class, first_line(error_message)) if p)
    if kind == "retry":
        text = "retry" + (f" {attempt}" if attempt else "")
        text += f" in {delay:.1f}s" if delay is not None else ""
        return text + (f" after {error}" if error else "")
    if kind == "failed":
        text = f"failed after {attempt} attempt{'s' if attempt != 1 else ''}" if attempt else "failed"
        return text + (f": {error}" if error else "")
    if kind == "deferred":
        return f"deferred for {delay:.1f}s" if delay is not None else "deferred"
    return kind  # canceled, stopped


def event_order(e: JobEvent) -> tuple[datetime, tuple[int, ...], str]:
    """Events are applied in event time, then stream order (a folded start `<id>-s` sorts by time)."""
    try:
        seq = tuple(int(part) for part in e.event_id.split("-"))
    except ValueError:
        seq = ()
    return e.at, seq, e.event_id


def in_order(events: Iterable[JobEvent]) -> list[JobEvent]:
    """The batch oldest first, each event id once (the first copy wins, as a re-applied event
    changes nothing)."""
    unique: dict[str, JobEvent] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    return sorted(unique.values(), key=event_order)


Keyed = tuple[tuple[Any, ...], list[Any]]
"""(sort key as `event_order` makes it, row from `row_of`)."""


def ordered_rows(keyed: list[Keyed]) -> list[list[Any]]:
    """`batch_rows` of rows built by `row_of`: sorted by their keys, numbered (`pos`) oldest first.
    Sorts `keyed` and numbers its rows in place; each event id once (a stream read never repeats
    an entry)."""
    keyed.sort(key=_first)
    rows = [row for _, row in keyed]
    for pos, row in enumerate(rows):
        row[0] = pos
    return rows


def _first(pair: Keyed) -> tuple[Any, ...]:
    return pair[0]


def batch_rows(events: Sequence[JobEvent]) -> list[list[Any]]:
    """One `history_batch` row per event (BATCH_COLUMNS), `events` already `in_order`."""
    rows = [row_of(e.event_id, e.kind.value, e.job_id, e.at, e.queue, e.type,
                   e.priority.rank if e.priority is not None else None, e.attempt, e.duration, e.delay,
                   e.func, e.args, e.worker, e.error_class, e.error_message, e.traceback, e.message)
            for e in events]
    for pos, row in enumerate(rows):
        row[0] = pos
    return rows


def row_of(event_id: str, kind: str, job_id: str, at: datetime, queue: str, type: str | None,
           rank: int | None, attempt: int | None, duration: float | None, delay: float | None,
           func: str | None, args: str | None, worker: str | None, error_class: str | None,
           error_message: str | None, traceback: str | None, message: str | None) -> list[Any]:
    """One event's `history_batch` row (BATCH_COLUMNS, `pos` 0 until numbered) from its fields
    (`kind`: the kind's value, one of KINDS)."""
    text = message_of(kind, message, queue, attempt, duration, delay, worker, error_class, error_message)
    if kind == "failed":
        error_class = error_class or "unknown"
        fingerprint = failure_fingerprint(error_class, error_message or "")
    else:
        error_class = error_message = traceback = fingerprint = None
    return [0, event_id, job_id, at, kind, _TEXT_LEVELS.get(kind, "info"), attempt, delay, text,
            type, queue, rank, func, args, worker, duration,
            at + timedelta(seconds=delay) if delay is not None and kind in _TEXT_SCHEDULING else None,
            error_class, error_message, traceback, fingerprint]


# ---- the per-event reference ------------------------------------------------------------------

def event_params(e: JobEvent) -> Row:
    """The parameters of the per-event `apply_event` statement."""
    kind = e.kind
    delay_until = e.at + timedelta(seconds=e.delay) if e.delay is not None else None
    error_class = e.error_class or "unknown"
    is_failed = kind is EventKind.FAILED
    return {
        "event_id": e.event_id, "job_id": e.job_id, "at": e.at, "kind": kind.value,
        "level": _LEVELS.get(kind, "info"), "attempt": e.attempt, "delay": e.delay,
        "message": event_message(e), "status": kind.status.value, "type": e.type, "queue": e.queue,
        "priority": e.priority.rank if e.priority is not None else None,
        "func": e.func, "args": e.args, "worker": e.worker,
        "insert_attempts": (e.attempt or 1) if kind is EventKind.STARTED else (e.attempt or 0)
        if kind in _RUN_ENDING else 0,
        "run_attempt": e.attempt if kind in _RUN_ENDING else None,
        "bump": kind is EventKind.STARTED and e.attempt is None,
        "is_started": kind is EventKind.STARTED, "is_failed": is_failed,
        "started_at": e.at if kind is EventKind.STARTED else None,
        "finished_at": e.at if kind in _TERMINAL else None,
        "failed_at": e.at if is_failed else None,
        "sets_finish": kind in _TERMINAL, "clears_finish": kind in _REQUEUING,
        "sets_duration": kind in (EventKind.FINISHED, EventKind.FAILED),
        "duration": e.duration if kind in (EventKind.FINISHED, EventKind.FAILED) else None,
        "sets_schedule": kind in _SCHEDULING,
        "scheduled_for": delay_until if kind in _SCHEDULING else None,
        "error_class": error_class if is_failed else None,
        "error_message": e.error_message if is_failed else None,
        "traceback": e.traceback if is_failed else None,
        "fingerprint": failure_fingerprint(error_class, e.error_message or "") if is_failed else None,
    }


class _Cursor(Protocol):
    def executemany(self, query: Any, params_seq: Iterable[Any]) -> None: ...
    def execute(self, query: Any, params: Any = ...) -> Any: ...


def apply_one_by_one(cur: _Cursor, statement: Any, resolve: Any, events: Sequence[JobEvent]) -> None:
    """The reference apply: `statement` (`apply_event`) once per event, oldest first, then
    `resolve` (`resolve_failures`) for the batch's `requeued` events. The set-based apply must
    leave the same rows; it is what the history writer did before (about 7,000 events/s)."""
    ordered = sorted(events, key=event_order)
    cur.executemany(statement, [event_params(e) for e in ordered])
    requeued = [(e.job_id, e.at) for e in events if e.kind is EventKind.REQUEUED]
    if requeued:
        cur.execute(resolve, {"ids": [j for j, _ in requeued], "ats": [at for _, at in requeued]})
