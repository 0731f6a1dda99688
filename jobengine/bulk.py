"""Acting on every job a typed search matches, in batches, with progress, a cap and a stop.

    result = Bulk(store, operations).run("retry", parse_query("type:email since:1h"), cap=10_000)

Retry walks the open failures newest first, cancel the in-flight jobs oldest first, each in
keyset batches of `batch` ids read from PostgreSQL (one query a batch) and acted on in Redis
(retry: one `retry_many` a batch; cancel: job by job). `progress(done, total)` follows each
batch, `stop()` is asked before each one; the cap bounds what one action touches. Per-job audit
rows are not written: the engine writes the action's one row (filter and counts), and each job's
log still names the operator (its history event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from jobengine.errors import JobNotFound, ValidationError
from jobengine.operations import Operations
from jobengine.query import JobQuery

if TYPE_CHECKING:
    from jobengine.store.postgres import PostgresStore

BulkKind = Literal["retry", "cancel"]
BATCH = 1000
Progress = Callable[[int, int], object]


@dataclass(frozen=True)
class BulkResult:
    """What one bulk action did: `matched` jobs matched (before the cap), `done` were retried or
    canceled, `skipped` were not (no longer in Redis, already done), `attempted` were tried."""

    kind: BulkKind
    query: JobQuery
    matched: int
    attempted: int = 0
    done: int = 0
    skipped: int = 0
    cap: int = 0
    stopped: bool = False
    dry_run: bool = False

    @property
    def capped(self) -> bool:
        return self.matched > self.cap

    def line(self) -> str:
        """One line for the audit row, the CLI and the console's notification."""
        what = self.query.source or "everything"
        verb = "retried" if self.kind == "retry" else "canceled"
        if self.dry_run:
            would = min(self.matched, self.cap)
            return f"filter {what!r}: {self.matched:,} job(s) match; {would:,} would be {verb}" + (
                f" (capped at {self.cap:,})" if self.capped else "")
        text = f"filter {what!r}: {self.done:,} of {self.matched:,} job(s) {verb}"
        notes = []
        if self.skipped:
            notes.append(f"{self.skipped:,} skipped")
        if self.capped:
            notes.append(f"capped at {self.cap:,}")
        if self.stopped:
            notes.append(f"stopped after {self.attempted:,}")
        return text + (f" ({', '.join(notes)})" if notes else "")


class Bulk:
    """The batched walk behind Engine.bulk (no guard, no audit row: the engine's)."""

    def __init__(self, store: PostgresStore, operations: Operations, batch: int | None = None) -> None:
        self.store = store
        self.operations = operations
        self.batch = batch or BATCH

    def count(self, kind: BulkKind, query: JobQuery) -> int:
        """How many jobs the action would touch before the cap (failures or in-flight jobs)."""
        check(kind, query)
        return int(self.store.failed_total(query) if kind == "retry" else self.store.in_flight_total(query))

    def run(self, kind: BulkKind, query: JobQuery, cap: int, *, progress: Progress | None = None,
            stop: Callable[[], bool] | None = None, dry_run: bool = False) -> BulkResult:
        matched = self.count(kind, query)
        total = min(matched, cap)
        if dry_run:
            return BulkResult(kind, query, matched, cap=cap, dry_run=True)
        attempted = done = 0
        cursor: Any = None
        stopped = False
        while attempted < total:
            if stop is not None and stop():
                stopped = True
                break
            size = min(self.batch, total - attempted)
            if kind == "retry":
                ids, cursor = self.store.failed_filtered_ids(query, cursor, size)
                done += len(self.operations.retry_many(ids, audit=False)) if ids else 0
            else:
                ids, cursor = self.store.in_flight_filtered_ids(query, cursor, size)
                done += sum(self._cancel(job_id) for job_id in ids)
            attempted += len(ids)
            if progress is not None:
                progress(attempted, total)
            if cursor is None or not ids:
                break
        return BulkResult(kind, query, matched, attempted, done, attempted - done, cap, stopped)

    def _cancel(self, job_id: str) -> bool:
        try:
            return self.operations.cancel(job_id, audit=False)
        except JobNotFound:
            return False


def check(kind: str, query: JobQuery) -> None:
    """A search the action can run: cancel works on in-flight jobs, which have no error."""
    if kind not in ("retry", "cancel"):
        raise ValidationError(f"bulk action: expected retry or cancel, got {kind!r}")
    if kind == "cancel" and query.error:
        raise ValidationError("search: error: filters failures; cancel works on queued, scheduled and "
                              "running jobs (use type:, queue:, since:, args:, id: or free text)")
