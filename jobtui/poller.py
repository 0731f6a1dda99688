"""The console's one poller.

A single `@work(thread=True, exclusive=True, group="poll")` worker calls `engine.snapshot()`
(plus the few extra reads the active screen asked for in its `PollPlan`) and posts one
`SnapshotUpdated`. Only when that worker has finished does a one-shot timer re-arm the next
poll, so polls never overlap and a slow engine only stretches the interval. A poll asked for
while one is in flight (after an action, a new filter) runs as soon as the current one ends.
Errors are not caught here: the app's `Worker.StateChanged` handler turns them into the
outage banner.

The last alert notices (`engine.recent_alerts`) are read by every poll, whatever the screen:
they are one Redis LRANGE of at most `RECENT_ALERTS` short JSON strings, and reading them always
lets the nav bar count the alerts firing on every screen (and the Alerts screen open with
current rows). The other extras cost PostgreSQL queries and are read only for the screen shown.

Reads carry the read epoch they started in. A finished retry or cancel starts a new epoch
(`new_read_epoch`): what a poll (or a page load) started before it read may predate the
action, so it is dropped and a fresh poll shows the engine's state after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from jobtui.messages import FAILED_PAGE, RECENT_ALERTS, PollExtras, PollPlan, SnapshotUpdated

if TYPE_CHECKING:
    from jobengine.api import EngineAPI

POLL_GROUP = "poll"


def describe_error(error: BaseException) -> str:
    """One line for the banner or a notification: the engine's message, else the class name."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__


def fetch_extras(engine: EngineAPI, plan: PollPlan) -> PollExtras:
    """The plan's extra reads, and the recent alerts; a failing one is reported in `errors`
    (the alerts' in `alerts_error`), the others still count."""
    failed = groups = detail = None
    errors: list[str] = []
    alerts = alerts_error = None
    try:
        alerts = tuple(engine.recent_alerts(RECENT_ALERTS))
    except Exception as exc:  # not a banner line: the Alerts screen says it (Redis down: the snapshot does)
        alerts_error = describe_error(exc)
    if plan.failed_search:
        try:
            failed = tuple(engine.failed_jobs(FAILED_PAGE, None, plan.failed_search))
        except Exception as exc:  # any engine failure becomes a banner line
            errors.append(describe_error(exc))
    if plan.groups:
        try:
            groups = tuple(engine.failure_groups(search=plan.failed_search))
        except Exception as exc:
            errors.append(describe_error(exc))
    if plan.job_id:
        try:
            detail = engine.job_detail(plan.job_id, max_text=plan.text_limit)
        except Exception as exc:
            errors.append(describe_error(exc))
    window = None
    if plan.window:
        try:
            window = engine.throughput(plan.window)
        except Exception as exc:
            errors.append(describe_error(exc))
    return PollExtras(plan=plan, failed=failed, groups=groups, detail=detail, window=window, alerts=alerts,
                      alerts_error=alerts_error, errors=tuple(errors))


class PollerMixin:
    """Polling for the App: `start_polling`, `poll_now`, `pause_polling`, `resume_polling`.

    The host App provides `engine`, `refresh_interval` and `poll_plan()`, and calls
    `poll_finished()` from its `Worker.StateChanged` handler.
    """

    engine: EngineAPI
    refresh_interval: float
    _poll_timer: Timer | None = None
    _poll_in_flight: bool = False
    _poll_again: bool = False
    _polling_paused: bool = False
    _read_epoch: int = 0

    def poll_plan(self) -> PollPlan:  # pragma: no cover - overridden by the app
        return PollPlan()

    def start_polling(self) -> None:
        """Run the first poll now; each finished poll arms the next."""
        self.poll_now()

    def poll_now(self) -> None:
        """Poll as soon as possible without ever running two polls at once."""
        if self._poll_in_flight:
            self._poll_again = True
            return
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        self._poll_in_flight = True
        self._poll(self.poll_plan(), self._read_epoch)

    @work(thread=True, exclusive=True, group=POLL_GROUP, exit_on_error=False, name="poll")
    def _poll(self, plan: PollPlan, epoch: int) -> None:
        snapshot = self.engine.snapshot()
        extras = fetch_extras(self.engine, plan)
        if not get_current_worker().is_cancelled:
            self.post_message(SnapshotUpdated(snapshot, extras, epoch))  # type: ignore[attr-defined]

    @property
    def read_epoch(self) -> int:
        """Results of reads started in an earlier epoch are stale: drop them."""
        return self._read_epoch

    def new_read_epoch(self) -> None:
        """Something just changed what the engine returns: reads in flight may predate it."""
        self._read_epoch += 1

    def poll_finished(self, worker: Worker[object]) -> bool:
        """Re-arm after a poll worker ended; True if `worker` was a poll."""
        if worker.group != POLL_GROUP or worker.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            return False
        self._poll_in_flight = False
        if self._poll_again:
            self._poll_again = False
            self.poll_now()
        elif not self._polling_paused:
            self._poll_timer = self.set_timer(self.refresh_interval, self.poll_now, name="poll")  # type: ignore[attr-defined]
        return True

    def pause_polling(self) -> None:
        """Stop re-arming; a poll already running still lands."""
        self._polling_paused = True
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None

    def resume_polling(self) -> None:
        """Poll now and keep polling."""
        self._polling_paused = False
        self.poll_now()

    @property
    def polling_paused(self) -> bool:
        return self._polling_paused
