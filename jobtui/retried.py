"""Failures this console has retried, hidden among the pages of failures it has already loaded.

The engine takes a retried failure off the failed list in PostgreSQL as part of the retry
(`failed_jobs.retried_at`; a `requeued` event does it later if PostgreSQL was down), so every
console's next poll agrees. A poll refreshes only the first page, though: rows this console
loaded further down, and the counts it shows, would keep a retried failure until they are
reloaded. This hides them at once.

Each entry remembers the newest failure the operator saw (a job's `failed_at`, a group's
`last_seen`); only failures up to then are hidden, so a job that fails again after its retry
shows up again. Pure and thread-agnostic: the app updates it from `ActionDone` on the UI thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from jobengine.models import FailedJob, FailureGroup


@dataclass
class RetriedFailures:
    """Job ids and failure-group fingerprints retried from this console, with their cut-offs."""

    jobs: dict[str, datetime] = field(default_factory=dict)
    groups: dict[str, datetime] = field(default_factory=dict)

    def retried_job(self, job_id: str, newest_failure: datetime) -> None:
        """The job's failures up to `newest_failure` were dealt with."""
        held = self.jobs.get(job_id)
        self.jobs[job_id] = newest_failure if held is None else max(held, newest_failure)

    def retried_group(self, fingerprint: str, last_seen: datetime) -> None:
        """Every failure of the group up to `last_seen` was dealt with."""
        held = self.groups.get(fingerprint)
        self.groups[fingerprint] = last_seen if held is None else max(held, last_seen)

    def hides(self, row: FailedJob) -> bool:
        cut = self.jobs.get(row.job_id)
        if cut is not None and row.failed_at <= cut:
            return True
        cut = self.groups.get(row.fingerprint)
        return cut is not None and row.failed_at <= cut

    def hides_group(self, group: FailureGroup) -> bool:
        cut = self.groups.get(group.fingerprint)
        return cut is not None and group.last_seen <= cut

    def visible(self, rows: Iterable[FailedJob]) -> list[FailedJob]:
        return [r for r in rows if not self.hides(r)]

    def visible_total(self, total: int, first_page: Iterable[FailedJob]) -> int:
        """The engine's failure count less the rows of its first page that are hidden (rows the
        engine no longer returns are no longer counted by it either)."""
        return max(0, total - sum(1 for r in first_page if self.hides(r)))

    def __bool__(self) -> bool:
        return bool(self.jobs or self.groups)
