"""The console: `JobTUI(engine)` shows and steers a job engine through `EngineAPI` only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import ClassVar

from textual import work
from textual.app import App
from textual.worker import Worker, WorkerState, get_current_worker

from jobengine.api import EngineAPI
from jobengine.errors import OperationRefused
from jobengine.models import JobDetail
from jobtui.actions import APP, bindings_for
from jobtui.commands import JobCommands, LaneCommands
from jobtui.format import clock_time, count
from jobtui.messages import (
    DETAIL_TEXT,
    ActionDone,
    DetailLoaded,
    Operation,
    Outcome,
    PollPlan,
    SnapshotUpdated,
    ViewState,
)
from jobtui.poller import POLL_GROUP, PollerMixin, describe_error
from jobtui.screens.alerts import AlertsScreen
from jobtui.screens.base import BaseScreen
from jobtui.screens.dashboard import DashboardScreen
from jobtui.screens.failed import FailedScreen
from jobtui.screens.help import HelpScreen
from jobtui.screens.job import JobScreen
from jobtui.screens.lane import LaneScreen
from jobtui.screens.lookup import LookupScreen
from jobtui.screens.stuck import StuckScreen

SCREEN_ORDER = ("dashboard", "failed", "stuck", "job", "alerts")
ACTION_GROUP = "action"
VERB_PAST = {"retry": "Retried", "cancel": "Canceled", "retry_group": "Retried", "run_now": "Moved to the front:",
             "pause": "Paused", "resume": "Resumed"}


def _local_now() -> datetime:
    return datetime.now().astimezone()


class JobTUI(PollerMixin, App[None]):
    """Dashboard, failed, stuck, job and alerts screens over one poller; actions run in thread workers."""

    TITLE = "jobtui"
    CSS_PATH = "app.tcss"
    MODES: ClassVar = {
        "dashboard": DashboardScreen,
        "failed": FailedScreen,
        "stuck": StuckScreen,
        "job": JobScreen,
        "alerts": AlertsScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS = bindings_for(APP)
    COMMANDS = App.COMMANDS | {JobCommands, LaneCommands}
    NOTIFICATION_TIMEOUT = 6

    def __init__(
        self,
        engine: EngineAPI,
        *,
        refresh: float = 1.0,
        read_only: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.refresh_interval = max(0.05, float(refresh))
        self.read_only = read_only or bool(getattr(engine, "read_only", False))
        self.clock: Callable[[], datetime] = clock or _local_now
        self.view_state = ViewState()
        self.current_job: JobDetail | None = None
        self.previous_mode = "dashboard"
        settings = getattr(engine, "settings", None)
        self.bulk_cap = int(getattr(settings, "bulk_cap", 10_000))
        """The most jobs one bulk action by filter touches ([console] bulk_cap)."""
        self.alerts_setup = _alerts_setup(settings)
        """'configured', 'disabled' or 'no urls' from the engine's settings; None if it has none."""

    # ---- lifecycle -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self._update_sub_title()
        self.theme_changed_signal.subscribe(self, lambda _theme: self.call_after_refresh(self._repaint))
        self.start_polling()

    def _repaint(self) -> None:
        """Re-render from the same state (colours in table cells follow the theme)."""
        self._set_state(self.view_state)

    def poll_plan(self) -> PollPlan:
        base = self.screen_stack[0] if self.screen_stack else None
        return base.poll_plan() if isinstance(base, BaseScreen) else PollPlan()

    def action_prompt(self) -> None:
        """`:` opens the command palette (`:lane low` opens that lane; any action by its name)."""
        self.action_command_palette()

    def open_lane(self, queue: str, state: str = "queued") -> None:
        """Push the lane view of `queue` over the current screen (escape goes back)."""
        top = self.screen
        if isinstance(top, LaneScreen) and top.queue == queue:
            return
        if isinstance(top, LaneScreen):
            self.pop_screen()
        self.push_screen(LaneScreen(queue, state))

    # ---- poll results --------------------------------------------------------------------
    def on_snapshot_updated(self, message: SnapshotUpdated) -> None:
        if message.epoch != self.read_epoch:
            return  # started before an action finished: the poll it asked for follows
        extras = message.extras
        job = self.current_job
        if extras.detail is not None and job is not None and extras.detail.record.id == job.record.id:
            self.current_job = extras.detail
        if extras.alerts is None:  # the alerts could not be read: keep the last ones (greyed)
            extras = replace(extras, alerts=self.view_state.extras.alerts)
        self._set_state(ViewState(message.snapshot, extras))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == POLL_GROUP and event.state == WorkerState.ERROR and worker.error is not None:
            self._set_state(replace(self.view_state, outage=describe_error(worker.error)))
        elif worker.group == ACTION_GROUP and event.state == WorkerState.ERROR:
            error = describe_error(worker.error or Exception())
            self.notify(f"Action failed: {error}", severity="error", markup=False)
        self.poll_finished(worker)

    def _set_state(self, state: ViewState) -> None:
        self.view_state = state
        self._update_sub_title()
        with self.batch_update():
            for screen in self.screen_stack:
                if isinstance(screen, BaseScreen) and screen.is_mounted:
                    screen.render_state(state)

    def _update_sub_title(self) -> None:
        state = self.view_state
        tz = self.clock().tzinfo
        parts = []
        if state.outage is not None:
            parts.append("OFFLINE")
        parts.append("PAUSED" if self.polling_paused else f"live · every {self.refresh_interval:g}s")
        if state.snapshot is not None:
            parts.append(f"data {clock_time(state.snapshot.taken_at, tz)}")
        if self.read_only:
            parts.append("read-only")
        self.sub_title = " · ".join(parts)

    # ---- navigation ----------------------------------------------------------------------
    def action_show(self, mode: str) -> None:
        """Switch to one of the screens of SCREEN_ORDER."""
        if mode not in self.MODES or mode == self.current_mode:
            return
        self.previous_mode = self.current_mode
        self.switch_mode(mode)

    def action_next_screen(self) -> None:
        index = SCREEN_ORDER.index(self.current_mode) if self.current_mode in SCREEN_ORDER else -1
        self.action_show(SCREEN_ORDER[(index + 1) % len(SCREEN_ORDER)])

    def action_help(self) -> None:
        base = self.screen_stack[0] if self.screen_stack else None
        mode = base.MODE if isinstance(base, BaseScreen) else None
        self.push_screen(HelpScreen(mode, read_only=self.read_only, paused=self.polling_paused))

    def action_lookup(self) -> None:
        def found(detail: JobDetail | None) -> None:
            if detail is not None:
                self.show_job(detail)

        self.push_screen(LookupScreen(), found)

    def show_job(self, detail: JobDetail) -> None:
        """Show `detail` on the Job screen."""
        self.current_job = detail
        if self.current_mode == "job":
            self._set_state(self.view_state)
        else:
            self.action_show("job")

    def open_job(self, job_id: str) -> None:
        """Fetch a job's detail in a worker, then show it on the Job screen."""
        self._fetch_job(job_id)

    @work(thread=True, exclusive=True, group="open-job", exit_on_error=False)
    def _fetch_job(self, job_id: str) -> None:
        try:
            message = DetailLoaded(job_id, self.engine.job_detail(job_id, max_text=DETAIL_TEXT))
        except Exception as exc:
            message = DetailLoaded(job_id, None, error=describe_error(exc))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        if message.detail is not None:
            self.show_job(message.detail)
        else:
            self.notify(message.error or f"Job {message.key[:8]} is gone.", severity="warning", markup=False)

    # ---- refresh control -----------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pause":
            return not self.polling_paused
        if action == "resume":
            return self.polling_paused
        return True

    def action_pause(self) -> None:
        self.pause_polling()
        self._after_pause_change()

    def action_resume(self) -> None:
        self.resume_polling()
        self._after_pause_change()

    def _after_pause_change(self) -> None:
        self._update_sub_title()
        self.refresh_bindings()
        self.notify("Refresh paused (p resumes)" if self.polling_paused else "Refresh resumed", timeout=2)

    # ---- steering ------------------------------------------------------------------------
    def run_operation(self, operation: Operation) -> None:
        """Run a retry/cancel in a thread worker; the result arrives as ActionDone."""
        if self.read_only:
            self.notify("Read-only mode: retry, cancel, run now and pause are disabled.", severity="warning")
            return
        self._operate(operation)

    @work(thread=True, group=ACTION_GROUP, exit_on_error=False)
    def _operate(self, op: Operation) -> None:
        done: list[str] = []
        skipped: list[str] = []
        refused: str | None = None
        error: str | None = None
        total = 0
        try:
            if op.verb == "retry_group" and op.fingerprint:
                total = self.engine.retry_group(op.fingerprint)
            elif op.verb in ("pause", "resume") and op.queue:
                done = [op.queue] if (self.engine.pause(op.queue, op.reason) if op.verb == "pause"
                                      else self.engine.resume(op.queue)) else []
                total = len(done)
            else:
                calls = {"retry": self.engine.retry, "cancel": self.engine.cancel, "run_now": self.engine.run_now}
                call = calls[op.verb]
                for job_id in op.job_ids:
                    try:
                        (done if call(job_id) else skipped).append(job_id)
                    except OperationRefused as exc:
                        refused = describe_error(exc)
                        skipped.append(job_id)
                total = len(done)
        except OperationRefused as exc:
            refused = describe_error(exc)
        except Exception as exc:
            error = describe_error(exc)
        self.post_message(ActionDone(Outcome(op, tuple(done), tuple(skipped), total, refused, error)))

    def on_action_done(self, message: ActionDone) -> None:
        outcome = message.outcome
        self.new_read_epoch()  # a poll or page load in flight may have read before the action
        text, title, severity = _describe(outcome)
        self.notify(text, title=title, severity=severity, markup=False)  # type: ignore[arg-type]
        for screen in self.screen_stack:
            if isinstance(screen, BaseScreen):
                screen.on_outcome(outcome)
        self.poll_now()


def _alerts_setup(settings: object) -> str | None:
    """Whether the engine sends alerts, from its settings ([alerts] urls and enabled)."""
    if settings is None or not hasattr(settings, "alert_urls"):
        return None
    if not getattr(settings, "alert_urls", ()):
        return "no urls"
    return "configured" if getattr(settings, "alerts_enabled", True) else "disabled"


def _describe(outcome: Outcome) -> tuple[str, str, str]:
    """(message, title, severity) for a finished operation's notification."""
    op = outcome.operation
    verb = {"retry": "Retry", "cancel": "Cancel", "retry_group": "Retry", "run_now": "Run now", "pause": "Pause",
            "resume": "Resume"}[op.verb]
    if outcome.error:
        return f"{outcome.error}", f"{verb} failed", "error"
    if op.verb == "retry_group":
        if outcome.refused:
            return outcome.refused, f"{verb} refused", "warning"
        if not outcome.count:
            return f"No failed jobs left in group {op.label}.", "Nothing to retry", "warning"
        return f"{count(outcome.count)} jobs in group {op.label} went back on their lanes.", "Retried", "information"
    if op.verb in ("pause", "resume"):
        if outcome.refused:
            return outcome.refused, f"{verb} refused", "warning"
        state = "paused" if op.verb == "pause" else "running"
        if not outcome.done:
            return f"Lane {op.queue} was {state} already.", "Nothing to do", "warning"
        return f"{VERB_PAST[op.verb]} lane {op.queue} on every worker.", "Done", "information"
    n = len(op.job_ids)
    if outcome.refused and not outcome.done:
        return outcome.refused, f"{verb} refused", "warning"
    if not outcome.done:
        what = op.label or "the job"
        return f"Nothing to {verb.lower()} for {what}.", "Nothing to do", "warning"
    past = op.past or VERB_PAST[op.verb]
    text = f"{past} {op.label}." if n == 1 else f"{past} {len(outcome.done)} of {n} jobs."
    if outcome.refused:
        text += f" Refused: {outcome.refused}"
    return text, "Done", "warning" if outcome.skipped else "information"
