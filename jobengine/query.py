"""Typed search: `type:email queue:high error:Timeout since:1h args:ada@ id:3f2a free text`.

    q = parse_query("type:email,sms since:1h timed out")
    q.types == ("email", "sms"); q.text == "timed out"; q.since == now - 1 h

Known keys (any order, each at most once; a value with spaces in double quotes):

    type:A,B    the job type is A or B (exact)              indexed
    queue:A,B   the queue is A or B (exact)                 indexed
    since:1h    failed (failures) / created (jobs) at most 1h ago; 90s 15m 12h 7d 2w, or an
                ISO date or time (UTC unless it says)       indexed
    error:X     the exception class or message contains X (any case)
    args:X      the job's arguments contain X (any case)
    id:X        the job id starts with X

Anything else (a word with a colon included, "ConnectionError:") is free text, matched as the
failed list always did: type, queue, exception or message containing it, or an id prefix. The
store turns a JobQuery into the parameters of its named queries (jobengine/store/filters.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobengine import validate as v
from jobengine.errors import ValidationError

KEYS = ("type", "queue", "error", "since", "args", "id")
_TOKEN = re.compile(r'(?<!\S)(' + "|".join(KEYS) + r'):("(?:[^"\\]|\\.)*"|\S*)', re.IGNORECASE)


@dataclass(frozen=True)
class JobQuery:
    """A parsed typed search; empty fields do not filter."""

    types: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    error: str | None = None
    since: datetime | None = None
    args: str | None = None
    id_prefix: str | None = None
    text: str | None = None
    source: str = ""
    """The text it was parsed from (what the operator typed; audit rows quote it)."""

    def __bool__(self) -> bool:
        return bool(self.types or self.queues or self.error or self.since or self.args or self.id_prefix
                    or self.text)

    def describe(self) -> str:
        """A canonical one-line form: 'type:email queue:high since:2025-03-14T13:03:12Z timed out'."""
        parts = []
        if self.types:
            parts.append("type:" + ",".join(self.types))
        if self.queues:
            parts.append("queue:" + ",".join(self.queues))
        if self.error:
            parts.append(f"error:{_quoted(self.error)}")
        if self.since:
            parts.append(f"since:{self.since.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        if self.args:
            parts.append(f"args:{_quoted(self.args)}")
        if self.id_prefix:
            parts.append(f"id:{self.id_prefix}")
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


def _quoted(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


def _value(raw: str) -> str:
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        return re.sub(r'\\(.)', r'\1', raw[1:-1])
    return raw


def _since(value: str, now: datetime) -> datetime:
    if re.fullmatch(r"\s*\d[\d.]*\s*[smhdwSMHDW]\s*", value):
        return now - timedelta(seconds=v.parse_duration(value, "since"))
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationError(f"since: {v.show(value)} is neither a duration (90s, 15m, 1h, 7d, 2w) nor an "
                              "ISO date or time (2025-03-14, 2025-03-14T13:00)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_query(text: str | None, now: datetime | None = None) -> JobQuery:
    """Parse a typed search (None or blank: match everything); a bad value is one ValidationError."""
    if text is None:
        return JobQuery()
    v.text(text, "search", max_len=v.MAX_TEXT, empty=True)
    now = now or datetime.now(UTC)
    found: dict[str, str] = {}
    for match in _TOKEN.finditer(text):
        key, value = match.group(1).lower(), _value(match.group(2))
        if key in found:
            raise ValidationError(f"search: {key}: is given twice (list values with commas: {key}:a,b)")
        if not value.strip():
            raise ValidationError(f"search: {key}: needs a value, e.g. {_EXAMPLES[key]}")
        found[key] = value.strip()
    rest = " ".join(_TOKEN.sub(" ", text).split()) or None
    names = {k: tuple(dict.fromkeys(p.strip() for p in found[k].split(",") if p.strip())) for k in ("type", "queue")
             if k in found}
    for queue in names.get("queue", ()):
        v.queue_name(queue, "search: queue")
    id_prefix = found.get("id")
    if id_prefix is not None and not re.fullmatch(r"[A-Za-z0-9_\-]+", id_prefix):
        raise ValidationError(f"search: id: letters, digits, '_' and '-' only, got {v.show(id_prefix)}")
    return JobQuery(types=names.get("type", ()), queues=names.get("queue", ()), error=found.get("error"),
                    since=_since(found["since"], now) if "since" in found else None, args=found.get("args"),
                    id_prefix=id_prefix, text=rest, source=text.strip())


_EXAMPLES = {"type": "type:email", "queue": "queue:high", "error": "error:Timeout", "since": "since:1h",
             "args": "args:ada@", "id": "id:3f2a"}
