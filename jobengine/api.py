"""The engine surface the console and the CLI read and steer through.

`jobengine.engine.Engine` implements it against Redis and PostgreSQL; the console's snapshot
tests feed the app a deterministic double that implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from jobengine.models import (
    FailedJob,
    FailureGroup,
    HealthReport,
    JobDetail,
    JobRecord,
    LanePage,
    Snapshot,
    WindowStats,
)

if TYPE_CHECKING:
    from jobengine.alerts.state import AlertRecord
    from jobengine.bulk import BulkResult


class EngineAPI(Protocol):
    @property
    def read_only(self) -> bool:
        """True when the engine refuses operator actions."""
        ...

    def snapshot(self) -> Snapshot:
        """Everything the dashboard shows plus the first page of failed and stuck jobs.

        Raises `UnavailableError` only when nothing at all can be read; a partial outage
        comes back as a Snapshot whose `outages` name what is down (typed: component, message).
        """
        ...

    def failed_jobs(
        self, limit: int = 50, before: tuple[datetime, int] | None = None, search: str | None = None
    ) -> list[FailedJob]:
        """Final failures newest first; `before` is the (failed_at, id) of the last row seen."""
        ...

    def failure_groups(self, limit: int = 100, search: str | None = None) -> list[FailureGroup]: ...

    def stuck_jobs(self, limit: int = 100) -> list[JobRecord]: ...

    def job_detail(self, job_id_or_prefix: str, max_text: int | None = None) -> JobDetail | None: ...

    def health(self) -> HealthReport: ...

    def recent_alerts(self, limit: int = 20) -> list[AlertRecord]:
        """The last alert notices sent or tried, newest first (one Redis read)."""
        ...

    def throughput(self, window: str = "1h") -> WindowStats:
        """The throughput series and p50/p95 run time per job type of a window ("1h", "6h", "24h", "7d")."""
        ...

    def retry(self, job_id: str) -> bool:
        """Put a failed/canceled/stopped job back on its lane. False if nothing to do."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or scheduled job, or stop a running one. False if nothing to do."""
        ...

    def retry_group(self, fingerprint: str) -> int:
        """Retry every failed job in a failure group; returns how many went back."""
        ...

    def pause(self, queue: str, reason: str | None = None) -> bool:
        """Pause a queue on every worker (jobs stay queued); False if it was paused already."""
        ...

    def resume(self, queue: str) -> bool:
        """Resume a paused queue; False if it was not paused."""
        ...

    def lane_page(self, queue: str, state: str = "queued", after: tuple[float, str] | None = None,
                  limit: int = 50) -> LanePage:
        """One keyset page of a lane's jobs in one state (queued, scheduled, running, ...)."""
        ...

    def run_now(self, job_id: str) -> bool:
        """Move a scheduled job to the front of its queue; False if it is not scheduled."""
        ...

    def count_filtered(self, kind: str, search: str | None) -> int:
        """How many jobs a bulk retry / cancel by this typed search would touch (before the cap)."""
        ...

    def bulk(self, kind: str, search: str | None, *, cap: int | None = None,
             progress: Callable[[int, int], object] | None = None, stop: Callable[[], bool] | None = None,
             dry_run: bool = False) -> BulkResult:
        """Retry or cancel everything the typed search matches, in batches, audited as one action."""
        ...
