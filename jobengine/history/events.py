"""The history event format (Redis only): one stream entry per job transition.

Workers append one XADD to the pipeline they already send for a job's bookkeeping (`add_event`),
so history costs no extra round trip; `HistoryWriter` (history/writer.py) turns the entries into
the store's batch rows (`entry_rows`: one pass, no `JobEvent` in between) and copies them to
PostgreSQL. `parse_events` reads an entry as `JobEvent`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from jobengine import keys
from jobengine.models import JobEvent
from jobengine.store.batch import KINDS, Keyed, row_of
from jobengine.types import EventKind, Priority

_OPTIONAL = frozenset({"type", "priority", "attempt", "duration", "delay", "func", "args", "worker",
                       "error_class", "error_message", "traceback", "message", "started"})
_KIND_TEXT = {kind: kind.value for kind in EventKind}  # an Enum's .value is a Python property: slow


def event_fields(kind: EventKind, job_id: str, queue: str, at: datetime | None = None,
                 **details: Any) -> dict[str, str]:
    """The stream entry for one event; None values are left out (a worker's hot path: every
    transition of every job)."""
    stamp = (at or datetime.now(UTC)).timestamp()
    fields = {"k": _KIND_TEXT[kind], "j": job_id, "q": queue, "t": f"{stamp:.6f}"}
    if not _OPTIONAL.issuperset(details):
        raise TypeError(f"unknown event detail {min(set(details) - _OPTIONAL)!r}")
    for name, value in details.items():
        if value is None:
            continue
        kind_of = type(value)
        fields[name] = value if kind_of is str else value.value if isinstance(value, Priority) else str(value)
    return fields


def add_event(pipe: redis.client.Pipeline, kind: EventKind, job_id: str, queue: str,
              **details: Any) -> None:
    """Append one event to a pipeline (no round trip of its own)."""
    pipe.xadd(keys.EVENTS_STREAM, event_fields(kind, job_id, queue, **details))  # type: ignore[arg-type]


def parse_events(event_id: str, raw: Mapping[bytes | str, bytes | str]) -> list[JobEvent]:
    """The events of one stream entry: itself, preceded by its run's `started` event when the
    worker folded that in (field `started`: the run's start, epoch seconds; id `<id>-s`)."""
    event = parse_event(event_id, raw)
    started = raw.get(b"started", raw.get("started"))
    if started is None:
        return [event]
    start = JobEvent(event_id=f"{event_id}-s", kind=EventKind.STARTED, job_id=event.job_id, queue=event.queue,
                     at=datetime.fromtimestamp(float(started), UTC), type=event.type, attempt=event.attempt,
                     worker=event.worker)
    return [start, event]


def parse_event(event_id: str, raw: Mapping[bytes | str, bytes | str]) -> JobEvent:
    """Turn a stream entry back into a JobEvent (a folded-in `started` is left out: see parse_events)."""
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in raw.items()}

    def num(name: str, kind: type = float) -> Any:
        return kind(f[name]) if name in f else None

    return JobEvent(
        event_id=event_id,
        kind=EventKind(f["k"]),
        job_id=f["j"],
        queue=f["q"],
        at=datetime.fromtimestamp(float(f["t"]), UTC),
        type=f.get("type"),
        priority=Priority(f["priority"]) if "priority" in f else None,
        attempt=num("attempt", int),
        duration=num("duration"),
        delay=num("delay"),
        func=f.get("func"),
        args=f.get("args"),
        worker=f.get("worker"),
        error_class=f.get("error_class"),
        error_message=f.get("error_message"),
        traceback=f.get("traceback"),
        message=f.get("message"),
    )


_RANKS = {priority.value: priority.rank for priority in Priority}


def entry_rows(event_id: str, raw: Mapping[bytes | str, bytes | str] | Sequence[bytes]) -> list[Keyed]:
    """The store's batch rows of one stream entry, each with its sort key (`batch.ordered_rows`
    numbers them): exactly `batch_rows` of `parse_events`, decoded once and built without
    `JobEvent`s (the history writer's hot path). `raw` is the entry's fields as a mapping, or
    as Redis sends them (field, value, field, value...). Raises KeyError or ValueError (a
    UnicodeDecodeError too) for an entry that does not parse, as `parse_events` does."""
    pairs: Any = zip(it := iter(raw), it, strict=False) if isinstance(raw, list) else raw.items()  # type: ignore[union-attr]
    try:
        f = {k.decode(): v.decode() for k, v in pairs}
    except AttributeError:  # a client decoding responses itself
        pairs = zip(it := iter(raw), it, strict=False) if isinstance(raw, list) else raw.items()  # type: ignore[union-attr]
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in pairs}
    get = f.get
    kind = f["k"]
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a valid EventKind")
    job_id, queue, type_, worker = f["j"], f["q"], get("type"), get("worker")
    at = datetime.fromtimestamp(float(f["t"]), UTC)
    attempt = int(a) if (a := get("attempt")) is not None else None
    duration = float(d) if (d := get("duration")) is not None else None
    delay = float(d) if (d := get("delay")) is not None else None
    rank = _RANKS[r] if (r := get("priority")) is not None else None
    try:
        seq: tuple[int, ...] = tuple(map(int, event_id.split("-")))
    except ValueError:
        seq = ()
    row = ((at, seq, event_id),
           row_of(event_id, kind, job_id, at, queue, type_, rank, attempt, duration, delay, get("func"),
                  get("args"), worker, get("error_class"), get("error_message"), get("traceback"),
                  get("message")))
    started = get("started")
    if started is None:
        return [row]
    start_id, start_at = f"{event_id}-s", datetime.fromtimestamp(float(started), UTC)
    return [((start_at, (), start_id),
             row_of(start_id, "started", job_id, start_at, queue, type_, None, attempt, None, None,
                    None, None, worker, None, None, None, None)), row]
