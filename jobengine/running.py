"""What runs now: every registered worker with its current job (or since when it is idle), and
the long-running warning, read from what RQ and our workers already write.

- A worker's current job: its RQ execution records (`rq:worker:{name}:executions`, each with
  `created_at`, the run's start). RQ's workers record every run; the fast worker records a run
  once it has lasted `execution_after` (0.25 s). A worker whose hash says `busy` without one
  is looked up in the started registries (`rq:wip:{queue}`, first WIP_CAP entries each): a
  fast worker holds its batch there, each job hash naming it (`worker_name`). A worker with no
  job anywhere is shown `idle`, whatever its hash says (between batches, waiting on a rate
  limit): `busy` always comes with a job.
- A worker's `idle_since`: the monitor notes, in one Redis hash (`ACTIVITY`), each worker's
  jobs-done count (RQ's successful + failed job counts) and when it last saw the worker busy
  or that count change; a worker that has done nothing is idle since its birth. Unknown (None)
  for a worker first seen idle after it ran jobs, until its next job ends.
- Long-running jobs: current jobs whose run started more than `thresholds.long_running` ago.
  The first process to see one (SET NX of a per-job marker, kept a day) logs the warning and
  writes a `long_running` line into the job's history log; the snapshot lists them all.
  `LongRunningWatch` does the same check every few seconds from any process that runs workers
  (one process per interval deployment-wide, behind a Redis lock), so the warning fires at the
  threshold even with no console open.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import redis
from rq.utils import utcparse

from jobengine import keys
from jobengine.models import RunningJob, WorkerInfo

log = logging.getLogger("jobengine.monitor")

WIP_CAP = 200
"""Started-registry entries read per queue to find what a busy worker without an execution
record holds (a fast worker's batch); beyond it such a worker keeps RQ's `busy` with no job."""
ACTIVITY = f"{keys.PREFIX}:monitor:worker-activity"
"""Hash worker name -> "jobs done|busy (0/1)|since (epoch seconds, '' unknown)"."""
ACTIVITY_TTL = 86400
WARNED_TTL = 86400
"""How long a job's long-running marker lasts (the warning fires once per job in that time)."""
SCAN_LOCK = f"{keys.PREFIX}:monitor:long-running-scan"


def warned_key(job_id: str) -> str:
    """Marker: the long-running warning of this job has been given."""
    return f"{keys.PREFIX}:monitor:long-running:{job_id}"


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _epoch(value: bytes | str | None) -> datetime | None:
    text = _text(value)
    try:
        return datetime.fromtimestamp(float(text), UTC) if text else None
    except ValueError:
        return None


def _stamp(value: bytes | str | None) -> datetime | None:
    text = _text(value)
    try:
        return utcparse(text) if text else None
    except ValueError:
        return None


def job_type_of(meta: bytes | None, description: bytes | str | None) -> str:
    """The job's type as dispatch set it (RQ's pickled `meta`), else its function's short name."""
    if meta:
        try:
            value = pickle.loads(meta)  # noqa: S301 - RQ's own job data, read as RQ's Job.restore reads it
        except Exception:  # another serializer, or garbage: the description still names the function
            value = None
        if isinstance(value, dict) and value.get("type"):
            return str(value["type"])
    text = _text(description) or ""
    name = text.split("(", 1)[0].strip()
    return name.rpartition(".")[2] or "unknown"


@dataclass
class _Worker:
    key: str
    data: dict[str, str]
    executions: list[str]
    ttl: int


@dataclass(frozen=True)
class WorkerRead:
    """What `read_workers` found: workers (with current jobs), their key TTLs, the jobs running."""

    workers: list[WorkerInfo]
    ttls: dict[str, int]
    running: list[RunningJob]


def _jobs_done(data: dict[str, str]) -> int:
    try:
        return int(data.get("successful_job_count") or 0) + int(data.get("failed_job_count") or 0)
    except ValueError:
        return 0


def read_workers(connection: redis.Redis, now: datetime) -> WorkerRead:
    """Every registered worker with its current job or idle time: three round trips (two when
    no worker runs anything), plus one write when a worker's activity changed."""
    names = sorted(_text(k) or "" for k in connection.smembers(keys.RQ_WORKERS))
    if not names:
        return WorkerRead([], {}, [])
    with connection.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.hgetall(key)
            pipe.smembers(keys.rq_worker_executions_key(keys.rq_worker_name(key)))
            pipe.ttl(key)
        pipe.hgetall(ACTIVITY)
        raw = pipe.execute()
    found: list[_Worker] = []
    for i, key in enumerate(names):
        data = {_text(k) or "": _text(v) or "" for k, v in raw[3 * i].items()}
        if data:  # else expired, still in the set
            found.append(_Worker(key, data, sorted(_text(e) or "" for e in raw[3 * i + 1]), int(raw[3 * i + 2])))
    activity = {_text(k) or "": _text(v) or "" for k, v in raw[-1].items()}
    current, unknown = _current_jobs(connection, found)
    workers, running = [], []
    for w in found:
        name = keys.rq_worker_name(w.key)
        beat = w.data.get("last_heartbeat")
        job = current.get(name)
        info = WorkerInfo(
            name=name, host=w.data.get("hostname") or "?", pid=int(w.data.get("pid") or 0),
            state="busy" if job is not None else ("idle" if w.data.get("state") in ("busy", "idle", None, "")
                                                  else w.data.get("state") or "?"),
            current_job=job.id if job else None, queues=tuple(q for q in (w.data.get("queues") or "").split(",") if q),
            last_heartbeat=_stamp(beat), current_job_type=job.type if job else None,
            current_job_started=job.started_at if job else None)
        if job is None and name in unknown:  # the registries were cut at WIP_CAP: RQ's word stands
            info = replace(info, state="busy")
        workers.append(info)
        if job is not None:
            running.append(job)
    workers = _idle_times(connection, workers, {keys.rq_worker_name(w.key): w for w in found}, activity, now)
    workers.sort(key=lambda w: (w.host, w.pid))
    running.sort(key=lambda j: j.started_at)
    return WorkerRead(workers, {keys.rq_worker_name(w.key): w.ttl for w in found}, running)


def _current_jobs(connection: redis.Redis, found: Sequence[_Worker]) -> tuple[dict[str, RunningJob], set[str]]:
    """Worker name -> the job it runs (from its execution records, else the started registries
    for a busy worker without one), and the busy workers not found in registries cut at WIP_CAP."""
    recorded = [(keys.rq_worker_name(w.key), w.executions[0]) for w in found if w.executions]
    unrecorded = {keys.rq_worker_name(w.key) for w in found if not w.executions and w.data.get("state") == "busy"}
    queues = sorted({q for w in found if keys.rq_worker_name(w.key) in unrecorded
                     for q in (w.data.get("queues") or "").split(",") if q})
    if not recorded and not queues:
        return {}, set()
    with connection.pipeline(transaction=False) as pipe:
        for _name, composite in recorded:
            job_id = composite.rpartition(":")[0]
            pipe.hget(keys.rq_execution_key(composite), "created_at")
            pipe.hmget(keys.rq_job_key(job_id), "meta", "description", "origin", "started_at")
        for q in queues:
            pipe.zrange(keys.rq_started_key(q), 0, WIP_CAP - 1)
        raw = pipe.execute()
    out: dict[str, RunningJob] = {}
    for i, (name, composite) in enumerate(recorded):
        created, (meta, description, origin, started) = raw[2 * i], raw[2 * i + 1]
        at = _epoch(created) or _stamp(started)
        if at is not None:
            out[name] = RunningJob(composite.rpartition(":")[0], job_type_of(meta, description),
                                   _text(origin) or "?", name, at)
    held = raw[2 * len(recorded):]
    candidates = [(q, (_text(m) or "").rpartition(":")[0]) for q, members in zip(queues, held, strict=True)
                  for m in members]
    if candidates and unrecorded:
        with connection.pipeline(transaction=False) as pipe:
            for _q, job_id in candidates:
                pipe.hmget(keys.rq_job_key(job_id), "worker_name", "meta", "description", "started_at")
            fields = pipe.execute()
        for (q, job_id), (worker, meta, description, started) in zip(candidates, fields, strict=True):
            name = _text(worker) or ""
            at = _stamp(started)
            if name in unrecorded and name not in out and at is not None:
                out[name] = RunningJob(job_id, job_type_of(meta, description), q, name, at)
    cut = any(len(members) >= WIP_CAP for members in held)
    return out, ({n for n in unrecorded if n not in out} if cut else set())


def _idle_times(connection: redis.Redis, workers: list[WorkerInfo], found: dict[str, _Worker],
                activity: dict[str, str], now: datetime) -> list[WorkerInfo]:
    """Fill `idle_since` from the activity notes and update them (one write, only on change)."""
    stamp = now.timestamp()
    changes: dict[str, str] = {}
    out = []
    for w in workers:
        data = found[w.name].data
        done = _jobs_done(data)
        busy = w.state == "busy"
        note = activity.get(w.name, "").split("|")
        seen_done, seen_busy, since = (int(note[0]), note[1] == "1", note[2]) if len(note) == 3 else (None, False, "")
        if busy:
            since = ""
        elif seen_done is None:  # first seen idle: since its birth if it never ran a job, else unknown
            birth = _stamp(data.get("birth"))
            since = f"{birth.timestamp():.3f}" if birth is not None and done == 0 else ""
        elif seen_busy or seen_done != done:  # a job ended since the last look
            since = f"{stamp:.3f}"
        value = f"{done}|{int(busy)}|{since}"
        if activity.get(w.name) != value:
            changes[w.name] = value
        out.append(w if busy else replace(w, idle_since=_epoch(since)))
    gone = [name for name in activity if name not in found]
    if changes or gone:
        with connection.pipeline(transaction=False) as pipe:
            if changes:
                pipe.hset(ACTIVITY, mapping=changes)  # type: ignore[arg-type]
            if gone:
                pipe.hdel(ACTIVITY, *gone)
            pipe.expire(ACTIVITY, ACTIVITY_TTL)
            pipe.execute()
    return out


def long_running(running: Sequence[RunningJob], threshold: float, now: datetime) -> list[RunningJob]:
    """The jobs of `running` whose run started more than `threshold` seconds before `now`."""
    return [j for j in running if (now - j.started_at).total_seconds() > threshold]


def warn_long_running(connection: redis.Redis, jobs: Sequence[RunningJob], threshold: float, now: datetime,
                      record: Callable[[RunningJob, str], None] | None = None) -> list[RunningJob]:
    """Give each job's long-running warning once (the process whose SET NX wins logs it and
    passes the line to `record`, which writes it into the job's history); returns the jobs
    warned now."""
    if not jobs:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.set(warned_key(job.id), f"{now.timestamp():.0f}", nx=True, ex=WARNED_TTL)
        won = pipe.execute()
    warned = [job for job, first in zip(jobs, won, strict=True) if first]
    for job in warned:
        line = f"running for more than {threshold:g} s (on worker {job.worker})"
        log.warning("long-running job %s (type %s) on %s: running for more than %gs", job.id, job.type,
                    job.worker, threshold)
        if record is not None:
            record(job, line)
    return warned


class LongRunningWatch:
    """A daemon thread checking for long-running jobs every `every` seconds (one process of the
    deployment per interval: a Redis lock held for the interval picks it)."""

    def __init__(self, connection: redis.Redis, check: Callable[[], object], every: float) -> None:
        self.connection = connection
        self.check = check
        self.every = max(0.2, float(every))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Check now unless another process checked within the interval; True when checked."""
        if not self.connection.set(SCAN_LOCK, "1", nx=True, px=int(self.every * 1000)):
            return False
        self.check()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a server outage: the next interval tries again
                log.debug("long-running check skipped: %s", exc)

    def start(self) -> LongRunningWatch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="long-running-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def watch_interval(threshold: float) -> float:
    """How often the watch checks: a quarter of the threshold, between 1 and 5 seconds."""
    return min(5.0, max(1.0, threshold / 4))


__all__ = ["ACTIVITY", "WIP_CAP", "LongRunningWatch", "WorkerRead", "job_type_of", "long_running", "read_workers",
           "warn_long_running", "watch_interval"]
