"""A lane's jobs and its pause switch, in Redis.

    lanes = Lanes(connection)
    rows, counts = lanes.page("low", "scheduled")        # soonest due first, one round trip
    lanes.pause("low", "ada@web-01", "mail provider down")  # every worker skips `low` within 1 s

Pages are keyset pages: a registry is read by score from the last (score, member) seen (ties
broken by member, as Redis orders them), the queue list from the position of the last job seen
(LPOS), so a page never reads what comes before it and never depends on an offset that workers
shift by taking jobs. The pause state is one Redis hash (`keys.PAUSED`) that every worker's
`QueueGate` reads at most every `PAUSE_REFRESH` seconds; jobs of a paused queue stay queued and
dispatch still enqueues them. Refusals (read-only), audit and history events are the engine's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import redis
from rq.utils import now, utcformat, utcparse

from jobengine import keys
from jobengine.models import LANE_STATES, JobRecord, LaneJob, LanePage, LaneState, PauseInfo

#: registry state -> (key builder, order): scheduled soonest due first, the started registry by
#: heartbeat deadline, ended jobs newest first (their score is when they expire).
_REGISTRIES = {
    "scheduled": (keys.rq_scheduled_key, "asc"),
    "running": (keys.rq_started_key, "asc"),
    "finished": (keys.rq_finished_key, "desc"),
    "failed": (keys.rq_failed_key, "desc"),
    "canceled": (keys.rq_canceled_key, "desc"),
}

_RUN_NOW = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return -1
end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local ttl = redis.call('HGET', KEYS[3], 'ttl')
redis.call('HSET', KEYS[3], 'status', 'queued', 'enqueued_at', ARGV[2])
if ttl and ttl ~= '' then redis.call('EXPIRE', KEYS[3], tonumber(ttl)) end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""
"""Move one job from its queue's scheduled registry to the front of the queue, atomically:
1 moved, 0 not scheduled (due already, run, canceled), -1 its hash is gone (the entry dropped)."""


@cache
def _page_script() -> str:
    return resources.files("jobengine").joinpath("lanes.lua").read_text(encoding="utf-8")


def _text(value: bytes | str | None) -> str | None:
    text = value.decode() if isinstance(value, bytes) else value
    return text or None


def _when(value: bytes | str | None) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        return utcparse(text)
    except ValueError:
        return None


def parse_paused(raw: Mapping[Any, Any]) -> dict[str, PauseInfo]:
    """The `keys.PAUSED` hash as queue -> PauseInfo (an unreadable entry still means paused)."""
    out: dict[str, PauseInfo] = {}
    for queue, value in raw.items():
        name = _text(queue) or ""
        try:
            data = json.loads(_text(value) or "{}")
            since = datetime.fromtimestamp(float(data.get("since") or 0), UTC)
            out[name] = PauseInfo(by=str(data.get("by") or "?"), since=since, reason=data.get("reason") or None)
        except (ValueError, TypeError, AttributeError, OverflowError):
            out[name] = PauseInfo(by="?", since=datetime.fromtimestamp(0, UTC))
    return out


@dataclass(frozen=True)
class RawPage:
    """What Redis holds for one page (the engine adds the history rows' type and arguments)."""

    jobs: tuple[LaneJob, ...]
    counts: dict[str, int]
    after: tuple[float, str] | None


class Lanes:
    """Reads and switches of one deployment's lanes (no guard, no audit: see Engine)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    # ---- pause ---------------------------------------------------------------------------
    def pause(self, queue: str, by: str, reason: str | None = None, at: datetime | None = None) -> bool:
        """Pause `queue`; False if it was paused already (the first pause's who and why stay)."""
        stamp = (at or datetime.now(UTC)).timestamp()
        value = json.dumps({"by": by, "since": round(stamp, 3), "reason": reason})
        return bool(self.connection.hsetnx(keys.PAUSED, queue, value))

    def resume(self, queue: str) -> bool:
        """Resume `queue`; False if it was not paused."""
        return bool(self.connection.hdel(keys.PAUSED, queue))

    def paused(self) -> dict[str, PauseInfo]:
        return parse_paused(self.connection.hgetall(keys.PAUSED))

    # ---- pages ---------------------------------------------------------------------------
    def page(self, queue: str, state: LaneState, after: tuple[float, str] | None = None,
             limit: int = 50) -> RawPage:
        """Up to `limit` jobs of `queue` in `state` after the cursor `after`, and every state's size."""
        if state == "queued":
            key, mode = keys.rq_queue_key(queue), "list"
        else:
            build, mode = _REGISTRIES[state]
            key = build(queue)
        counted = (keys.rq_queue_key(queue), *(_REGISTRIES[s][0](queue) for s in LANE_STATES[1:]))
        score, member = ("", "") if after is None else (_score_arg(after[0]), after[1])
        raw: list[Any] = self.connection.eval(_page_script(), 1 + len(counted), key, *counted, mode, score,
                                               member, limit, keys.RQ_JOB_PREFIX,
                                               "1" if state == "running" else "0")
        counts: dict[str, int] = dict(zip(LANE_STATES, (int(n) for n in raw[:6]), strict=True))
        rows = [raw[i:i + 9] for i in range(6, len(raw), 9)]
        jobs: list[LaneJob] = []
        last: tuple[float, str] | None = None
        for member_raw, score_raw, status, created, enqueued, started, ended, description, worker in rows:
            member_text, at = _text(member_raw) or "", float(_text(score_raw) or "nan")
            if after is not None and mode != "list" and _not_after(at, member_text, after, mode):
                continue  # a tie at the cursor's score already shown
            if len(jobs) == limit:
                break
            job_id = member_text.rpartition(":")[0] if state == "running" and ":" in member_text else member_text
            jobs.append(LaneJob(
                id=job_id, state=state, score=at, rq_status=_text(status), description=_text(description),
                created_at=_when(created), enqueued_at=_when(enqueued), started_at=_when(started),
                ended_at=_when(ended), worker=_text(worker)))
            last = (at, member_text)
        more = len(jobs) == limit and last is not None  # a full page: another may follow
        if more and mode == "list":
            more = int(jobs[0].score or 0) + len(jobs) < counts[state]
        return RawPage(tuple(jobs), counts, last if more else None)

    # ---- run now ---------------------------------------------------------------------------
    def run_now(self, job_id: str) -> str | None:
        """Put a scheduled job at the front of its queue now; its queue, or None if it was not
        scheduled (it is due already, ran, was canceled or is unknown)."""
        origin = _text(self.connection.hget(keys.rq_job_key(job_id), "origin"))
        if origin is None:
            return None
        moved = self.connection.eval(_RUN_NOW, 3, keys.rq_scheduled_key(origin), keys.rq_queue_key(origin),
                                     keys.rq_job_key(job_id), job_id, utcformat(now()))
        return origin if int(moved) == 1 else None


def with_history(queue: str, state: LaneState, raw: RawPage, records: Sequence[JobRecord]) -> LanePage:
    """The page with each job's type, function, arguments and attempts from its history row."""
    by_id = {r.id: r for r in records}
    jobs = []
    for job in raw.jobs:
        row = by_id.get(job.id)
        if row is not None:
            job = replace(job, type=row.type, func=row.func, args=row.args, attempts=row.attempts,
                          created_at=job.created_at or row.created_at, worker=job.worker or row.worker)
        jobs.append(job)
    return LanePage(queue=queue, state=state, jobs=tuple(jobs), total=raw.counts.get(state, 0), after=raw.after,
                    counts=raw.counts)


def _score_arg(score: float) -> str:
    if math.isinf(score):
        return "+inf" if score > 0 else "-inf"
    return repr(score)


def _not_after(score: float, member: str, after: tuple[float, str], mode: str) -> bool:
    """True when (score, member) is at or before the cursor in the page's order."""
    if score != after[0]:
        return score < after[0] if mode == "asc" else score > after[0]
    return member.encode() <= after[1].encode() if mode == "asc" else member.encode() >= after[1].encode()

