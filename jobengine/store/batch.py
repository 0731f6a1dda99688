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
    if event.message:
        return event.message
    error = ": ".join(p for p in (event.error_class, first_line(event.error_message)) if p)
    kind = event.kind
    if kind in (EventKind.QUEUED, EventKind.REQUEUED):
        return f"{kind.value} on {event.queue}"
    if kind is EventKind.SCHEDULED:
        return f"scheduled to run in {event.delay:.1f}s" if event.delay is not None else "scheduled"
    if kind is EventKind.STARTED:
        run = f"attempt {event.attempt}" if event.attempt else "run"
        return f"{run} started" + (f" on {event.worker}" if event.worker else "")
    if kind is EventKind.FINISHED:
        return f"finished in {event.duration:.3f}s" if event.duration is not None else "finished"
    if kind is EventKind.RETRY:
        text = "retry" + (f" {event.attempt}" if event.attempt else "")
        text += f" in {event.delay:.1f}s" if event.delay is not None else ""
        return text + (f" after {error}" if error else "")
    if kind is EventKind.FAILED:
        text = f"failed after {event.attempt} attempt{'s' if event.attempt != 1 else ''}" \
            if event.attempt else "failed"
        return text + (f": {error}" if error else "")
    if kind is EventKind.DEFERRED:
        return f"deferred for {event.delay:.1f}s" if event.delay is not None else "deferred"
    return kind.value  # canceled, stopped


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


def batch_rows(events: Sequence[JobEvent]) -> list[tuple[Any, ...]]:
    """One `history_batch` row per event (BATCH_COLUMNS), `events` already `in_order`."""
    rows = []
    for pos, e in enumerate(events):
        kind = e.kind
        failed = kind is EventKind.FAILED
        error_class = (e.error_class or "unknown") if failed else None
        rows.append((
            pos, e.event_id, e.job_id, e.at, kind.value, _LEVELS.get(kind, "info"), e.attempt, e.delay,
            event_message(e), e.type, e.queue, e.priority.rank if e.priority is not None else None,
            e.func, e.args, e.worker, e.duration,
            e.at + timedelta(seconds=e.delay) if e.delay is not None and kind in _SCHEDULING else None,
            error_class, e.error_message if failed else None, e.traceback if failed else None,
            failure_fingerprint(error_class, e.error_message or "") if error_class is not None else None,
        ))
    return rows


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
