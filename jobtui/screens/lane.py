"""A lane's jobs: queued, scheduled (due when, "in 4m"), running, finished, failed, canceled.

Pushed over the current screen (Enter on a lane row, `:lane low`); escape goes back. Each state
is read in keyset pages (`Engine.lane_page`): the first page again on every poll, the next ones as
the cursor nears the end. `c` cancels (or stops) the highlighted job, `n` runs a scheduled one
now, `r` retries a failed or canceled one, `C` cancels every job of the lane matching the filter,
`P` pauses or resumes the lane, `s` shows the next state.
"""

from __future__ import annotations

import itertools

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from jobengine.models import LANE_STATES, LaneJob, LanePage, LaneState, QueueStats
from jobtui.actions import ALL, bindings_for
from jobtui.format import DASH, clock_time, count, duration, ellipsize, relative, short_id
from jobtui.messages import DetailLoaded, Operation, Outcome, ViewState
from jobtui.poller import describe_error
from jobtui.screens.base import BaseScreen
from jobtui.screens.bulk import run_bulk
from jobtui.screens.confirm import confirm_pause
from jobtui.widgets.detail import JobDetailView
from jobtui.widgets.lanes import pause_text
from jobtui.widgets.table import Column, KeyedTable, Row

_SCREEN_IDS = itertools.count(1)
LANE_PAGE = 50
PREFETCH = 10
ARGS_CAP = 200
LABELS = {"queued": "Queued", "scheduled": "Scheduled", "running": "Running", "finished": "Finished",
          "failed": "Failed", "canceled": "Canceled"}
SHORT = {"queued": "Q", "scheduled": "Sched", "running": "Run", "finished": "Done", "failed": "Fail",
         "canceled": "Canc"}
IN_FLIGHT = ("queued", "scheduled", "running")
ENDED = ("failed", "canceled")

_JOB = Column("job", "Job", 8, priority=3)
_TYPE = Column("type", "Type", priority=1, min_width=12, cut="middle")
_ARGS = Column("args", "Arguments", priority=2, min_width=10, flex=True)
_ATT = Column("att", "Att", 3, priority=4)
COLUMNS: dict[str, tuple[Column, ...]] = {
    "queued": (Column("pos", "#"), _JOB, _TYPE, Column("when", "Enqueued", priority=5), _ATT, _ARGS),
    "scheduled": (_JOB, _TYPE, Column("due", "Due"), Column("in", "In"), _ATT, _ARGS),
    "running": (_JOB, _TYPE, Column("worker", "Worker", priority=5, min_width=12, cut="middle"),
                Column("when", "Started", priority=6), Column("elapsed", "Elapsed"), _ARGS),
    "ended": (_JOB, _TYPE, Column("when", "Ended"), _ATT, _ARGS),
}


class LanePageLoaded(Message, bubble=False):
    """A page of the lane arrived (or failed to): `first` replaces the head of the list."""

    def __init__(self, page: LanePage | None, state: str, first: bool, epoch: int, error: str | None = None) -> None:
        super().__init__()
        self.page, self.state, self.first, self.epoch, self.error = page, state, first, epoch, error


class LaneScreen(BaseScreen):
    """One lane, one state at a time, keyset-paged; steering keys act on the highlighted job."""

    MODE = "lane"
    TITLE = "Lane"
    AUTO_FOCUS = "#lane-table"
    CSS_PATH = "lane.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)
    FILTER_PLACEHOLDER = "filter these jobs by id, type or arguments (C cancels all matching) — esc clears"

    def __init__(self, queue: str, state: str = "queued") -> None:
        super().__init__(f"lane-screen-{next(_SCREEN_IDS)}")  # one closing while the next opens
        self.queue = queue
        self.section: LaneState = next((s for s in LANE_STATES if s == state), "queued")
        self.rows: list[LaneJob] = []
        self.after: tuple[float, str] | None = None
        self.loaded = False
        self.loading_more = False
        self.counts: dict[str, int] = {}
        self.error: str | None = None
        self._polled: object = None
        self._detail_key: str | None = None
        self._keys_state: str | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="lane-main"):
            yield Static(id="lane-tabs")
            yield Static(id="lane-status")
            yield KeyedTable(id="lane-table")
        yield JobDetailView(id="lane-detail")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#lane-table", KeyedTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        self.title = f"Lane {self.queue}"

    # ---- reading -------------------------------------------------------------------------
    def lane_stats(self) -> QueueStats | None:
        snap = self.state.snapshot
        return next((q for q in snap.queues if q.name == self.queue), None) if snap is not None else None

    def render_body(self, state: ViewState) -> None:
        if state.snapshot is not None and state.snapshot is not self._polled and not state.stale:
            self._polled = state.snapshot  # a new poll: read the first page again
            self.reload()
        self._show()

    def reload(self) -> None:
        self._load_first(self.queue, self.section, self.jobapp.read_epoch)

    @work(thread=True, exclusive=True, group="lane-first", exit_on_error=False)
    def _load_first(self, queue: str, state: str, epoch: int) -> None:
        self._fetch(queue, state, None, True, epoch)

    @work(thread=True, exclusive=True, group="lane-more", exit_on_error=False)
    def _load_more(self, queue: str, state: str, after: tuple[float, str], epoch: int) -> None:
        self._fetch(queue, state, after, False, epoch)

    def _fetch(self, queue: str, state: str, after: tuple[float, str] | None, first: bool, epoch: int) -> None:
        try:
            message = LanePageLoaded(self.jobapp.engine.lane_page(queue, state, after, LANE_PAGE), state, first,
                                     epoch)
        except Exception as exc:
            message = LanePageLoaded(None, state, first, epoch, describe_error(exc))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_lane_page_loaded(self, message: LanePageLoaded) -> None:
        if not message.first:
            self.loading_more = False
        if message.state != self.section or message.epoch != self.jobapp.read_epoch:
            return  # another state by now, or read before an action
        if message.page is None:
            self.error = message.error
            self._show()
            return
        page, self.error = message.page, None
        self.counts = dict(page.counts)
        if message.first:
            fresh = {j.id for j in page.jobs}
            tail = [j for j in self.rows[len(page.jobs):] if j.id not in fresh] if page.after is not None else []
            self.rows = list(page.jobs) + tail
            if not tail:
                self.after = page.after
        else:
            held = {j.id for j in self.rows}
            self.rows += [j for j in page.jobs if j.id not in held]
            self.after = page.after
        self.loaded = True
        self._show()

    # ---- rendering -----------------------------------------------------------------------
    def shown(self) -> list[LaneJob]:
        needle = self.needle.lower()
        if not needle:
            return self.rows
        return [j for j in self.rows
                if any(needle in (v or "").lower() for v in (j.id, j.type, j.args, j.description, j.worker))]

    def _show(self) -> None:
        self._render_tabs()
        table = self.table
        columns = COLUMNS["ended" if self.section in ("finished", *ENDED) else self.section]
        table.set_columns(columns)
        table.sync(self._rows(self.shown(), columns))
        self._render_status()
        self._follow_cursor()
        if self._keys_state != self.section:
            self._keys_state = self.section
            self.refresh_bindings()

    def _render_tabs(self) -> None:
        text = Text()
        narrow = self.narrow
        for state in LANE_STATES:
            n = self.counts.get(state)
            label = f" {SHORT[state] if narrow else LABELS[state]} {count(n) if n is not None else DASH} "
            style = "bold reverse" if state == self.section else "dim" if not n else ""
            text.append(label, style=style)
            text.append(" ")
        self.query_one("#lane-tabs", Static).update(text)

    def _render_status(self) -> None:
        lane = self.lane_stats()
        parts = []
        total = self.counts.get(self.section)
        if self.error:
            parts.append(f"could not read: {self.error}")
        elif not self.loaded:
            parts.append("loading…")
        else:
            more = "+" if self.after is not None else ""
            parts.append(f"{count(len(self.rows))}{more} of {count(total or 0)} {LABELS[self.section].lower()} shown")
        if self.needle:
            parts.append(f"filter “{self.needle}”")
        parts.append("s: next state")
        line = Text()
        if lane is not None and lane.paused is not None:
            reason = f" ({lane.paused.reason})" if lane.paused.reason else ""
            line.append(f"‖ {pause_text(lane, self.now)}{reason} · ", style=f"bold {self.theme_palette.warning}")
        line.append(" · ".join(parts))
        self.query_one("#lane-status", Static).update(line)

    def _rows(self, jobs: list[LaneJob], columns: tuple[Column, ...]) -> list[Row]:
        now, colors = self.now, self.theme_palette
        rows: list[Row] = []
        for job in jobs:
            due = job.due_at
            elapsed = (now - job.started_at).total_seconds() if job.started_at else None
            ended = job.ended_at
            cells = {
                "pos": Text(str(int(job.score or 0) + 1), justify="right"),
                "job": Text(short_id(job.id)),
                "type": Text(job.type or "?"),
                "when": Text(relative({"queued": job.enqueued_at, "running": job.started_at}.get(self.section, ended),
                                      now, compact=True)),
                "due": Text(clock_time(due, self.tz), style=f"bold {colors.accent}"),
                "in": Text(relative(due, now, compact=True) if due else DASH),
                "worker": Text(job.worker or DASH),
                "elapsed": Text(duration(elapsed), justify="right"),
                "att": Text(str(job.attempts), justify="right"),
                "args": Text(ellipsize(job.args or job.description or "", ARGS_CAP), style=colors.muted),
            }
            rows.append((job.id, [cells[c.key] for c in columns]))
        return rows

    # ---- highlight, paging, detail -------------------------------------------------------
    @on(DataTable.RowHighlighted, "#lane-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow_cursor()

    def _follow_cursor(self) -> None:
        key = self.table.cursor_key
        detail = self.query_one(JobDetailView)
        if key is None:
            self._detail_key = None
            detail.show_text("Loading…" if not self.loaded else f"No {LABELS[self.section].lower()} jobs.")
            return
        if self.table.cursor_row >= self.table.row_count - PREFETCH and self.after is not None \
                and not self.loading_more and not self.needle:
            self.loading_more = True
            self._load_more(self.queue, self.section, self.after, self.jobapp.read_epoch)
        if key != self._detail_key:
            self._detail_key = key
            detail.show_text(f"Loading {short_id(key)}…")
            self.fetch_detail(key, key)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        message.stop()
        if message.key != self.table.cursor_key:
            return
        view = self.query_one(JobDetailView)
        if message.detail is None:
            view.show_text(message.error or "No history for this job (dispatched outside jobengine?).",
                           style="italic")
        else:
            view.show_detail(message.detail, self.now, self.tz, self.theme_palette)

    @on(DataTable.RowSelected, "#lane-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    # ---- actions -------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """What does not apply to this state is greyed out (None); read-only hides (False)."""
        allowed = super().check_action(action, parameters)
        if not allowed:
            return allowed
        if action == "run_now" and self.section != "scheduled":
            return None
        if action == "retry" and self.section not in ENDED:
            return None
        if action == "cancel" and self.section not in IN_FLIGHT:
            return None
        return True

    def highlighted(self) -> LaneJob | None:
        key = self.table.cursor_key
        return next((j for j in self.rows if j.id == key), None)

    def _label(self, job: LaneJob) -> str:
        return f"{short_id(job.id)} ({job.type or '?'})"

    def action_open(self) -> None:
        job = self.highlighted()
        if job is not None:
            self.jobapp.open_job(job.id)

    def action_cancel(self) -> None:
        job = self.highlighted()
        if job is not None and self.section in IN_FLIGHT:
            past = "Stopped" if self.section == "running" else "Canceled"
            self.jobapp.run_operation(Operation("cancel", (job.id,), label=self._label(job), past=past))

    def action_run_now(self) -> None:
        job = self.highlighted()
        if job is not None and self.section == "scheduled":
            self.jobapp.run_operation(Operation("run_now", (job.id,), label=self._label(job)))

    def action_retry(self) -> None:
        job = self.highlighted()
        if job is not None and self.section in ENDED:
            self.jobapp.run_operation(Operation("retry", (job.id,), label=self._label(job)))

    def action_cancel_matching(self) -> None:
        search = f"queue:{self.queue} {self.needle}".strip()
        run_bulk(self.jobapp, "cancel", search, f"jobs of lane {self.queue}", f"job of lane {self.queue}",
                 after=self.reload)

    def action_toggle_pause(self) -> None:
        lane = self.lane_stats()
        confirm_pause(self.jobapp, self.queue, lane.paused if lane is not None else None, self.now)

    def action_next_section(self) -> None:
        index = LANE_STATES.index(self.section)
        self.show_section(LANE_STATES[(index + 1) % len(LANE_STATES)])

    def show_section(self, state: LaneState) -> None:
        self.section, self.rows, self.after, self.loaded, self.loading_more = state, [], None, False, False
        self._detail_key = None
        self.table.set_columns(())
        self._show()
        self.reload()

    def back(self) -> None:
        if self.query_one(JobDetailView).has_focus:
            self.table.focus()
        else:
            self.app.pop_screen()

    def on_outcome(self, outcome: Outcome) -> None:
        if outcome.done and outcome.operation.job_ids:
            gone = set(outcome.done)
            self.rows = [j for j in self.rows if j.id not in gone]
            self._detail_key = None
            self._show()
        self.reload()
