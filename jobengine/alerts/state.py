"""Alert state and the record of notices sent, both in Redis so a restart or another process
neither forgets an active alert nor sends it again.

`keys.ALERTS_STATE` is a hash: alert key -> JSON `KeyState`. `keys.ALERTS_SENT` is a list of
JSON `AlertRecord`s, newest first, capped at `RECORD_CAP` (`Engine.recent_alerts` reads it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from jobengine import keys

RECORD_CAP = 100


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class KeyState:
    """One alert key: active since when, whether its firing notice went out, when one last did."""

    event: str
    title: str
    active: bool = True
    since: float = 0.0
    notified: bool = False  # this activation's notice was delivered (so a resolved notice follows)
    sent_at: float | None = None  # the last firing notice delivered (at most one per interval)
    attempt_at: float | None = None  # the last delivery that failed (retried a little later)
    resolves: bool = True

    @classmethod
    def loads(cls, raw: bytes | str) -> KeyState | None:
        try:
            data = json.loads(_text(raw))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None  # a value of another version: forgotten, the condition is read again

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def load_states(connection: redis.Redis) -> dict[str, KeyState]:
    states = {}
    for key, raw in connection.hgetall(keys.ALERTS_STATE).items():
        state = KeyState.loads(raw)
        if state is not None:
            states[_text(key)] = state
    return states


def save_states(connection: redis.Redis, changed: dict[str, KeyState], dropped: set[str]) -> None:
    with connection.pipeline() as pipe:
        if changed:
            pipe.hset(keys.ALERTS_STATE, mapping={k: s.dumps() for k, s in changed.items()})
        if dropped:
            pipe.hdel(keys.ALERTS_STATE, *dropped)
        pipe.execute()


@dataclass(frozen=True)
class AlertRecord:
    """A notice sent (or tried): for `jobtui alerts recent` and the console."""

    at: datetime
    status: str  # "firing", "resolved" or "test"
    event: str  # one of config.ALERT_EVENTS, or "test"
    title: str
    body: str
    level: str = "info"
    keys: tuple[str, ...] = ()
    delivered: tuple[str, ...] = ()  # masked targets that accepted it
    failed: tuple[str, ...] = field(default=())  # masked targets that did not

    @property
    def ok(self) -> bool:
        return bool(self.delivered) and not self.failed

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat(timespec="seconds")
        data["keys"], data["delivered"], data["failed"] = list(self.keys), list(self.delivered), list(self.failed)
        return data

    @classmethod
    def loads(cls, raw: bytes | str) -> AlertRecord | None:
        try:
            data = json.loads(_text(raw))
            return cls(at=datetime.fromisoformat(data["at"]), status=data["status"], event=data["event"],
                       title=data["title"], body=data["body"], level=data.get("level", "info"),
                       keys=tuple(data.get("keys", ())), delivered=tuple(data.get("delivered", ())),
                       failed=tuple(data.get("failed", ())))
        except (ValueError, TypeError, KeyError):
            return None


def record(connection: redis.Redis, rec: AlertRecord) -> None:
    """Keep `rec` at the head of the list of notices sent (the oldest beyond RECORD_CAP go)."""
    with connection.pipeline() as pipe:
        pipe.lpush(keys.ALERTS_SENT, json.dumps(rec.as_dict(), separators=(",", ":")))
        pipe.ltrim(keys.ALERTS_SENT, 0, RECORD_CAP - 1)
        pipe.execute()


def recent(connection: redis.Redis, limit: int = 20) -> list[AlertRecord]:
    """The last `limit` notices sent (or tried), newest first: one Redis read."""
    out = []
    for raw in connection.lrange(keys.ALERTS_SENT, 0, max(0, limit - 1)):
        rec = AlertRecord.loads(raw)
        if rec is not None:
            out.append(rec)
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)
