"""Typed messages the console's thread workers post, and the values they carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from textual.message import Message

from jobengine.models import FailedJob, FailureGroup, JobDetail, Snapshot, WindowStats

if TYPE_CHECKING:
    from jobengine.alerts.state import AlertRecord

FAILED_PAGE = 50
"""Rows per page of failed jobs (keyset pagination)."""


DETAIL_TEXT = 16 * 1024
"""Characters of each long text (arguments, error message, traceback) a job's detail shows at
first; `m` on the Job screen asks for eight times more, up to DETAIL_TEXT_MAX."""
DETAIL_TEXT_MAX = 1024 * 1024

RECENT_ALERTS = 50
"""Alert notices each poll reads (of the 100 the engine keeps): the Alerts screen's rows."""


@dataclass(frozen=True)
class PollPlan:
    """What the active screen needs from one poll beyond `snapshot()`.

    `failed_search` asks for a filtered first page of failures, `groups` for the failure
    groups (with the same search), `job_id` for a fresh detail of the job on the Job screen,
    `window` for the throughput chart and run-time percentiles of a time window ("1h"...).
    """

    failed_search: str | None = None
    groups: bool = False
    job_id: str | None = None
    text_limit: int = DETAIL_TEXT
    window: str | None = None


@dataclass(frozen=True)
class PollExtras:
    """What one poll fetched for its plan; `errors` names the extra reads that failed."""

    plan: PollPlan = PollPlan()
    failed: tuple[FailedJob, ...] | None = None
    groups: tuple[FailureGroup, ...] | None = None
    detail: JobDetail | None = None
    window: WindowStats | None = None
    alerts: tuple[AlertRecord, ...] | None = None
    """The last alert notices, newest first (every poll); None before the first read."""
    alerts_error: str | None = None
    """The last read of `alerts` failed: they are the ones read before (shown greyed)."""
    errors: tuple[str, ...] = ()

    @property
    def firing(self) -> int | None:
        """How many alert keys are firing, as the notices read tell (None: not read yet).

        A key is firing when its newest notice among `alerts` is a firing one. A new failure
        group (`group:` keys) never gets a resolved notice, so it is not counted."""
        if self.alerts is None:
            return None
        latest: dict[str, str] = {}
        for rec in self.alerts:  # newest first: the first notice naming a key is its latest
            for key in rec.keys:
                latest.setdefault(key, rec.status)
        return sum(1 for key, status in latest.items() if status == "firing" and not key.startswith("group:"))


@dataclass(frozen=True)
class Operation:
    """One steering request from the operator, naming the jobs they saw."""

    verb: str  # "retry" | "cancel" | "retry_group" | "run_now" | "pause" | "resume"
    job_ids: tuple[str, ...] = ()
    fingerprint: str | None = None
    queue: str | None = None  # pause / resume
    reason: str | None = None
    label: str = ""
    past: str = ""
    """How the notification says it was done ('Retried', 'Stopped'); derived from verb if empty."""


@dataclass(frozen=True)
class Outcome:
    """What the engine did with an Operation."""

    operation: Operation
    done: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    count: int = 0
    refused: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ViewState:
    """Everything the screens render from: the last good data and the connection state."""

    snapshot: Snapshot | None = None
    extras: PollExtras = field(default_factory=PollExtras)
    outage: str | None = None

    @property
    def stale(self) -> bool:
        """True while the data on screen is older than the last poll (the engine is down)."""
        return self.outage is not None


class SnapshotUpdated(Message):
    """A poll succeeded; `epoch` is the app's read epoch when it started (see PollerMixin)."""

    def __init__(self, snapshot: Snapshot, extras: PollExtras | None = None, epoch: int = 0) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.extras = extras or PollExtras()
        self.epoch = epoch


class ActionDone(Message):
    """A retry/cancel worker finished."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__()
        self.outcome = outcome


class FailedPageLoaded(Message, bubble=False):
    """The next page of failed jobs arrived (or failed to)."""

    def __init__(
        self,
        rows: tuple[FailedJob, ...],
        search: str | None,
        before: tuple[datetime, int],
        error: str | None = None,
        epoch: int = 0,
    ) -> None:
        super().__init__()
        self.rows = rows
        self.search = search
        self.before = before
        self.error = error
        self.epoch = epoch


class DetailLoaded(Message, bubble=False):
    """A job detail arrived for whoever asked (a detail pane, the lookup prompt, the app)."""

    def __init__(self, key: str, detail: JobDetail | None, error: str | None = None) -> None:
        super().__init__()
        self.key = key
        self.detail = detail
        self.error = error
