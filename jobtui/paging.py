"""Keyset pagination of failed jobs, kept pure so it can be tested without a terminal.

Rows are newest first and ordered by `(failed_at, id)` descending; a page is asked for with
`before=(failed_at, id)` of the last row held, so no page ever loads the rows before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from jobengine.models import FailedJob

PREFETCH = 10
"""Load the next page when the cursor is this close to the last loaded row."""


def cursor_of(row: FailedJob) -> tuple[datetime, int]:
    return (row.failed_at, row.id)


@dataclass
class FailedPages:
    """The failed rows loaded so far and whether older ones remain."""

    page_size: int
    rows: list[FailedJob] = field(default_factory=list)
    exhausted: bool = False
    loading: bool = False

    def reset(self) -> None:
        self.rows, self.exhausted, self.loading = [], False, False

    def refresh_first(self, page: Sequence[FailedJob], total: int | None = None) -> None:
        """Replace the newest rows with a fresh first page, keeping older pages already loaded."""
        if not page:
            self.rows, self.exhausted = [], True
            return
        boundary = cursor_of(page[-1])
        tail = [r for r in self.rows if cursor_of(r) < boundary]
        self.rows = list(page) + tail
        if total is not None:
            self.exhausted = len(self.rows) >= total
        elif not tail:
            self.exhausted = len(page) < self.page_size
        # with a tail, whether older rows remain is what the last page said

    def append(self, page: Sequence[FailedJob]) -> None:
        """Add an older page (rows already held are skipped)."""
        self.loading = False
        held = {r.id for r in self.rows}
        boundary = cursor_of(self.rows[-1]) if self.rows else None
        self.rows += [r for r in page if r.id not in held and (boundary is None or cursor_of(r) < boundary)]
        self.exhausted = len(page) < self.page_size

    def next_before(self) -> tuple[datetime, int] | None:
        """The keyset cursor for the next page, or None when there is nothing more to load."""
        if self.exhausted or self.loading or not self.rows:
            return None
        return cursor_of(self.rows[-1])

    def near_end(self, index: int) -> bool:
        return index >= len(self.rows) - PREFETCH

    def drop_jobs(self, job_ids: Iterable[str]) -> None:
        gone = set(job_ids)
        self.rows = [r for r in self.rows if r.job_id not in gone]

    def drop_fingerprint(self, fingerprint: str) -> None:
        self.rows = [r for r in self.rows if r.fingerprint != fingerprint]
