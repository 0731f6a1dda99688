"""Dead letters: history events PostgreSQL refused as data (or that do not parse), parked aside.

The history writer moves such an entry from the events stream to `keys.EVENTS_DEAD`, byte for
byte, with three fields of its own (`x-id`: its id in the events stream, `x-error`: why, `x-at`:
when), so one bad event never blocks the stream (see history/writer.py). `jobtui history
dead-letters` lists them; `DeadLetters.retry` puts the original entries back on the events stream
(a writer takes them again; still refused, they come back here), `DeadLetters.drop` deletes them.
Both are operator actions (`dead_letters`: refused when read-only or not in `[permissions]
allow`) and audited: one `dead-letter-retry` row per retry, one `dead-letter-drop` row per letter
dropped. Redis only, apart from the audit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from jobengine import keys
from jobengine.operations import actor
from jobengine.store.protocol import HistoryStore

#: The fields the writer adds to a parked entry (never part of an event).
ORIGINAL_ID, ERROR, PARKED_AT = "x-id", "x-error", "x-at"
_OWN = frozenset({ORIGINAL_ID, ERROR, PARKED_AT})
#: The most characters of the reason kept with a dead letter.
MAX_ERROR = 2000
#: The operator action (OPERATOR_ACTIONS, `[permissions] allow`) of retrying and dropping them.
ACTION = "dead_letters"
#: The most letter ids a retry's audit row names.
AUDITED_IDS = 20


def _text(value: bytes | str) -> str:
    """Readable text of a stored value: bytes that are not UTF-8 show as backslash escapes."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    return text.replace("\x00", "\\x00")


@dataclass(frozen=True)
class DeadLetter:
    """One parked event: its id here and in the events stream, what it was, why it was refused."""

    id: str  #: id in the dead-letter stream
    event_id: str  #: id it had in the events stream
    job_id: str
    kind: str
    error: str
    parked_at: datetime | None
    fields: dict[str, str] = field(default_factory=dict)  #: the original fields, made readable

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event_id": self.event_id, "job_id": self.job_id, "kind": self.kind,
                "error": self.error, "parked_at": self.parked_at.isoformat() if self.parked_at else None,
                "fields": self.fields}


def park(pipe: Any, event_id: str, raw: Mapping[bytes | str, bytes | str], error: str) -> None:
    """Append the dead letter of one events-stream entry to a pipeline (the caller acks and
    deletes the original in the same MULTI)."""
    fields: dict[Any, Any] = {k: v for k, v in raw.items() if _text(k) not in _OWN}
    fields.update({ORIGINAL_ID: event_id, ERROR: _text(error)[:MAX_ERROR], PARKED_AT: f"{time.time():.6f}"})
    pipe.xadd(keys.EVENTS_DEAD, fields)


def _letter(entry_id: bytes | str, raw: Mapping[bytes | str, bytes | str]) -> DeadLetter:
    f = {_text(k): _text(v) for k, v in raw.items()}
    at = f.get(PARKED_AT)
    try:
        parked = datetime.fromtimestamp(float(at), UTC) if at else None
    except ValueError:
        parked = None
    return DeadLetter(id=_text(entry_id), event_id=f.get(ORIGINAL_ID, "?"), job_id=f.get("j", "?"),
                      kind=f.get("k", "?"), error=f.get(ERROR, ""), parked_at=parked,
                      fields={k: v for k, v in f.items() if k not in _OWN})


def count(connection: redis.Redis) -> int:
    """How many dead letters wait."""
    return int(connection.xlen(keys.EVENTS_DEAD))


def dead_letters(connection: redis.Redis, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters, oldest first (at most `limit`)."""
    got: Any = connection.xrange(keys.EVENTS_DEAD, "-", "+", count=limit)
    return [_letter(eid, raw) for eid, raw in got]


def _entries(connection: redis.Redis, ids: Iterable[str] | None) -> list[tuple[str, Any]]:
    """(id, raw fields) of the dead letters `ids` (None: all), skipping ids no longer there."""
    if ids is None:
        got: Any = connection.xrange(keys.EVENTS_DEAD, "-", "+")
        return [(_text(eid), raw) for eid, raw in got]
    out = []
    for wanted in ids:
        found: Any = connection.xrange(keys.EVENTS_DEAD, wanted, wanted)
        out += [(_text(eid), raw) for eid, raw in found]
    return out


class DeadLetters:
    """Retry or drop dead letters as an operator action: `guard("dead_letters")` first (the
    engine's: read-only and `[permissions] allow`), then the audit. `Engine.dead_letters()`."""

    def __init__(self, connection: redis.Redis, store: HistoryStore, *, guard: Callable[[str], None],
                 audit: Callable[[str, str], None]) -> None:
        self.connection = connection
        self.store = store
        self.guard = guard
        self.audit = audit

    def retry(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (`ids`, None: all) back on the events stream, as they were, in one
        MULTI; returns how many. A writer takes them again; refused again, they are parked again.
        One `dead-letter-retry` audit row: the count and the ids (or "all")."""
        self.guard(ACTION)
        entries = _entries(self.connection, ids)
        if entries:
            with self.connection.pipeline(transaction=True) as pipe:
                for eid, raw in entries:
                    pipe.xadd(keys.EVENTS_STREAM, {k: v for k, v in raw.items() if _text(k) not in _OWN})
                    pipe.xdel(keys.EVENTS_DEAD, eid)
                pipe.execute()
        self.audit("dead-letter-retry", _describe(len(entries), ids))
        return len(entries)

    def drop(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (`ids`, None: all) after writing one audit row each (action
        `dead-letter-drop`: the job, the event's kind and id, the reason); returns how many.
        Raises StoreUnavailable (nothing deleted) when the audit cannot be written."""
        self.guard(ACTION)
        entries = _entries(self.connection, ids)
        user, host = actor()
        for eid, raw in entries:
            letter = _letter(eid, raw)
            self.store.record_audit("dead-letter-drop", letter.job_id[:200], user, host,
                                    f"{letter.kind} event {letter.event_id}: {letter.error}"[:MAX_ERROR])
        if entries:
            self.connection.xdel(keys.EVENTS_DEAD, *[eid for eid, _ in entries])
        return len(entries)


def _describe(done: int, ids: Sequence[str] | None) -> str:
    """A retry's audit detail: `3 dead letter(s): all`, or `1 of 2 dead letter(s): <ids>`."""
    if ids is None:
        return f"{done} dead letter(s): all"
    shown = ", ".join(ids[:AUDITED_IDS]) + (f" and {len(ids) - AUDITED_IDS} more" if len(ids) > AUDITED_IDS else "")
    return (f"{done} of {len(ids)} dead letter(s)" + (f": {shown}" if ids else ""))[:MAX_ERROR]
