"""What is alerting now: `conditions(settings, readings)` turns one round of reads into the active
alert conditions (pure: no I/O; `jobengine.alerts.alerter` reads and sends).

Each condition has a key (`health`, `burst:FINGERPRINT`, `group:FINGERPRINT`, `stuck:JOB`,
`long_wait:QUEUE`, `dead_letters`, `redis_reset`) and an event (`[alerts] events`). A key that
was active and is absent from a round whose event was read has cleared (its resolved notice
follows); an event that could not be read this round (PostgreSQL down: failures, stuck, reset)
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from jobengine.config import ALERT_EVENTS, Settings
from jobengine.health import ago
from jobengine.models import FailureGroup, HealthReport, JobRecord, QueueProbe


@dataclass(frozen=True)
class Condition:
    """One alert that holds now."""

    key: str
    event: str  # one of ALERT_EVENTS
    title: str
    body: str
    level: str = "failure"  # apprise level while firing: "failure" or "warning"
    resolves: bool = True  # a resolved notice follows when it clears (a new failure group: none)
    covers: tuple[str, ...] = ()  # keys this notice already tells about (a burst covers its new group)


@dataclass(frozen=True)
class Readings:
    """One round's reads; a part left None was not read (its events keep their state)."""

    now: datetime
    health: HealthReport | None = None
    probes: Sequence[QueueProbe] | None = None
    groups: Sequence[tuple[FailureGroup, bool]] | None = None
    stuck: Sequence[JobRecord] | None = None
    redis_reset: bool | None = None
    dead_letters: int | None = None
    read: frozenset[str] = field(default_factory=frozenset)  # the events these reads cover


def _group_name(g: FailureGroup) -> str:
    message = g.sample_message.strip().splitlines()[0] if g.sample_message.strip() else ""
    message = message if len(message) <= 160 else message[:159] + "…"
    return f"{g.error_class or 'error'}: {message}" if message else (g.error_class or "error")


def conditions(settings: Settings, r: Readings) -> list[Condition]:
    """The conditions active in `r`, for the events `[alerts] events` selects."""
    wanted = set(settings.alert_events or ALERT_EVENTS)
    out: list[Condition] = []
    if "health" in wanted and r.health is not None and r.health.verdict == "failing":
        out.append(Condition("health", "health", "jobengine health is failing",
                             "\n".join(f"- {reason}" for reason in r.health.reasons)))
    if "failures" in wanted and r.groups is not None:
        minutes = f"{settings.alert_burst_minutes:g} min"
        for group, new in r.groups:
            name, fp = _group_name(group), group.fingerprint
            if group.count >= settings.alert_burst_count:
                out.append(Condition(
                    f"burst:{fp}", "failures", f"Burst of failures: {group.count} in {minutes}",
                    f"{'A new failure group' if new else 'Failure group'} {fp} failed {group.count} times in the "
                    f"last {minutes} (burst threshold {settings.alert_burst_count}): {name}. "
                    f"See the console's failure groups or `jobtui failed`.",
                    covers=(f"group:{fp}",) if new else ()))
            if new:
                out.append(Condition(
                    f"group:{fp}", "failures", "New failure group",
                    f"A failure not seen in the last 7 days: {name} (group {fp}, {group.count} so far).",
                    level="warning", resolves=False))
    if "stuck" in wanted and r.stuck is not None:
        for job in r.stuck:
            started = f", started {ago((r.now - job.started_at).total_seconds())} ago" if job.started_at else ""
            worker = f" on {job.worker}" if job.worker else ""
            out.append(Condition(
                f"stuck:{job.id}", "stuck", f"Job stuck: {job.id}",
                f"Job {job.id} ({job.type}, queue {job.queue}{worker}{started}) has been processing for more "
                f"than {ago(settings.stuck_after)} (thresholds.stuck_after)."))
    if "long_wait" in wanted and r.probes is not None:
        for p in r.probes:
            limit = settings.wait_threshold(p.name)
            if p.oldest_wait is not None and p.oldest_wait > limit:
                out.append(Condition(
                    f"long_wait:{p.name}", "long_wait", f"Long wait on queue {p.name}",
                    f"The oldest of {p.size:,} job(s) on queue {p.name} has waited {ago(p.oldest_wait)}, longer "
                    f"than {ago(limit)} (thresholds.long_wait / thresholds.queue_wait.{p.name}).", level="warning"))
    if "dead_letters" in wanted and r.dead_letters:
        out.append(Condition(
            "dead_letters", "dead_letters", "History events parked as dead letters",
            f"{r.dead_letters:,} history event(s) PostgreSQL refused wait as dead letters: "
            "see `jobtui history dead-letters` (retry or drop them).", level="warning"))
    if "redis_reset" in wanted and r.redis_reset:
        out.append(Condition(
            "redis_reset", "redis_reset", "Redis lost its data (not reconciled)",
            "Redis's epoch differs from the one PostgreSQL recorded and no reconcile has run since: jobs may be "
            "missing from the queues. Workers reconcile by themselves; or run `jobtui reconcile`."))
    return out


def event_of(key: str) -> str:
    """The event a key belongs to (`burst:…` and `group:…` are "failures")."""
    head = key.partition(":")[0]
    return "failures" if head in ("burst", "group") else head


__all__ = ["Condition", "Readings", "conditions", "event_of"]
