"""The health verdict: `jobtui health` and `engine.health()`.

Failing (exit 1): PostgreSQL unreachable (the Redis checks still run), more final failures in
the last hour than `thresholds.failed_per_hour`, a job processing longer than
`thresholds.stuck_after` (named), or history more than `thresholds.history_lag_failing` behind.
Warning (exit 0): history more than `thresholds.history_lag_warning` behind, dead letters, a
queue over its size threshold, a worker whose heartbeat is overdue (named), jobs waiting with no
worker. Unknown (exit 2): Redis cannot be reached, so the checks cannot run. Worker death: a
dead worker whose jobs are being recovered is a warning ("recovery in progress"); one left
unrecovered well past `worker.recovery_after` (no live worker runs recovery) is failing; a live
worker whose RQ registration vanished is a warning. Every reason is a plain sentence.

`verdict` is pure: `jobengine.monitor` reads (`Monitor.health`, `Monitor.compute_snapshot`) and
hands it the data; this module imports no reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jobengine.config import Settings
from jobengine.models import (
    HealthReport,
    HistoryProgress,
    JobRecord,
    Outage,
    QueueStats,
    StaleWorker,
    WorkerInfo,
    WorkerLiveness,
)

MAX_NAMED = 5


def ago(seconds: float) -> str:
    """'42 s', '7 min', '3 h 5 min', '2 d 4 h'."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")


def _sentence(text: str) -> str:
    return text if text.endswith(".") else f"{text}."


def _history(settings: Settings, history: HistoryProgress, failing: list[str], warnings: list[str]) -> None:
    """History behind (the oldest waiting event's age; the last write says whether a writer
    stalled) and dead letters."""
    lag = history.oldest_age
    if lag is not None and lag > settings.history_lag_warning:
        over = lag > settings.history_lag_failing
        threshold = settings.history_lag_failing if over else settings.history_lag_warning
        wrote = f"the last batch was written {ago(history.last_write_age)} ago" \
            if history.last_write_age is not None else "no history writer has written yet"
        text = (f"Job history is {ago(lag)} behind, more than {ago(threshold)}: {_plural(history.backlog, 'event')} "
                f"{'waits' if history.backlog == 1 else 'wait'} in Redis for PostgreSQL and {wrote}")
        if history.last_error:
            text += f" (last error: {history.last_error.rstrip('.')})"
        (failing if over else warnings).append(text + ".")
    if history.dead_letters:
        warnings.append(f"{_plural(history.dead_letters, 'history event')} PostgreSQL refused "
                        f"{'is' if history.dead_letters == 1 else 'are'} parked as dead letters: "
                        "see `jobtui history dead-letters`.")


def verdict(settings: Settings, now: datetime, *, queues: Sequence[QueueStats], workers: Sequence[WorkerInfo],
            stale: Sequence[StaleWorker], stuck: Sequence[JobRecord], failures_hour: int,
            outages: Sequence[Outage], history: HistoryProgress | None = None,
            redis_reset: bool = False, liveness: WorkerLiveness | None = None) -> HealthReport:
    """The report from what the checks read (pure: no I/O). Redis down makes it "unknown" (nothing
    can be checked); PostgreSQL down alone makes it "failing", with the Redis checks still run."""
    redis_ok = not any(o.component == "redis" for o in outages)
    pg_ok = not any(o.component == "postgres" for o in outages)
    if not redis_ok:
        reasons = tuple(_sentence(o.message) for o in outages)
        return HealthReport("unknown", reasons, now, redis_ok, pg_ok, workers=len(workers))
    failing: list[str] = [_sentence(o.message) + " Job history waits in Redis until it answers; dispatch and "
                          "workers go on." for o in outages]
    warnings: list[str] = []
    if redis_reset:
        failing.append("Redis lost its data since the history last matched it and no reconcile has run yet: "
                       "jobs may be missing from the queues (workers reconcile by themselves; "
                       "or run `jobtui reconcile`).")
    if failures_hour > settings.failed_per_hour:
        failing.append(f"{_plural(failures_hour, 'job')} failed in the last hour, more than the threshold "
                       f"of {settings.failed_per_hour:,}.")
    if stuck:
        named = [f"{j.id} ({j.type}" + (f" on {j.worker}" if j.worker else "")
                 + (f", started {ago((now - j.started_at).total_seconds())} ago)" if j.started_at else ")")
                 for j in stuck]
        failing.append(f"{_plural(len(stuck), 'job')} {'has' if len(stuck) == 1 else 'have'} been processing "
                       f"for more than {ago(settings.stuck_after)}: {_names(named)}.")
    for q in queues:
        if q.over_threshold:
            warnings.append(f"Queue {q.name} holds {q.size:,} jobs, over its threshold of {q.size_threshold:,}.")
    for w in stale:
        beat = f"last sent a heartbeat {ago((now - w.last_heartbeat).total_seconds())} ago" \
            if w.last_heartbeat else "has never sent a heartbeat"
        warnings.append(f"Worker {w.name} on {w.host} (pid {w.pid}) {beat}.")
    if liveness is not None:
        _death(settings, liveness, failing, warnings)
    if not workers and any(q.size for q in queues):
        warnings.append("No worker is running but jobs are waiting.")
    history = history or HistoryProgress()
    _history(settings, history, failing, warnings)
    if failing or warnings:
        reasons = tuple(failing + warnings)
    else:
        reasons = (f"All checks pass: Redis and PostgreSQL answer, {_plural(len(workers), 'worker')} alive, "
                   f"{_plural(failures_hour, 'failure')} in the last hour.",)
    return HealthReport("failing" if failing else "warning" if warnings else "healthy", reasons, now,
                        True, pg_ok, failures_last_hour=failures_hour, stuck_jobs=tuple(j.id for j in stuck),
                        workers=len(workers), history_backlog=history.backlog, history_lag=history.oldest_age,
                        dead_letters=history.dead_letters)


def _death(settings: Settings, liveness: WorkerLiveness, failing: list[str], warnings: list[str]) -> None:
    """Dead workers awaiting recovery (overdue: failing) and workers whose registration vanished."""
    window = settings.recovery_after
    overdue = [(n, s) for n, s in liveness.dead if s is None or s > 2 * window + 15]
    recovering = [(n, s) for n, s in liveness.dead if (n, s) not in overdue]
    if overdue:
        named = [n + (f" (last heartbeat {ago(s)} ago)" if s is not None else "") for n, s in overdue]
        failing.append(f"{_plural(len(overdue), 'dead worker')} still {'holds' if len(overdue) == 1 else 'hold'} "
                       f"jobs nobody recovered: {_names(named)}; start a worker (recovery runs in every worker) "
                       "or run `jobtui reconcile`.")
    if recovering:
        named = [n + (f" (last heartbeat {ago(s)} ago)" if s is not None else "") for n, s in recovering]
        its = "its" if len(recovering) == 1 else "their"
        warnings.append(f"Recovery in progress: {_plural(len(recovering), 'worker')} stopped sending heartbeats: "
                        f"{_names(named)}; {its} jobs go back to their queues within {window:.0f} s of {its} death.")
    if liveness.unregistered:
        warnings.append(f"The RQ registration of {_plural(len(liveness.unregistered), 'worker')} vanished (a Redis "
                        f"reset?): {_names(list(liveness.unregistered))}; each registers again at its next heartbeat.")
