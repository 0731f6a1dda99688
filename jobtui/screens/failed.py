"""Failed jobs: newest first with keyset paging, a grouped view, marks and a detail pane."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from jobengine.models import FailedJob, FailureGroup, JobDetail
from jobtui.actions import ALL, bindings_for
from jobtui.format import count, counted, ellipsize, relative, short_id
from jobtui.messages import FAILED_PAGE, DetailLoaded, FailedPageLoaded, Operation, Outcome, PollPlan, ViewState
from jobtui.paging import FailedPages
from jobtui.poller import describe_error
from jobtui.screens.base import BaseScreen
from jobtui.screens.bulk import run_bulk
from jobtui.screens.confirm import ConfirmScreen
from jobtui.widgets.detail import JobDetailView
from jobtui.widgets.table import Column, KeyedTable, Row

MARK = "●"
DETAIL_CACHE = 200
ERROR_WIDTH = 30
"""The widest an exception's class name gets in the tables (the detail pane shows it whole)."""
MESSAGE_CAP = 200
"""Messages are put on one line and cut here; the table shortens them further to its width."""


FLAT_COLUMNS = (
    Column("mark", " ", 1),
    Column("when", "Failed"),
    Column("job", "Job", 8, priority=4),
    Column("type", "Type", priority=1, min_width=14, cut="middle"),
    Column("queue", "Queue", priority=2, min_width=8),
    Column("error", "Exception", min_width=14),
    Column("attempts", "Att", 3, priority=3),
    Column("message", "Message", min_width=14, flex=True),
)
"""At 80 columns the job id and the attempts give way (the detail pane below shows both)."""
GROUP_COLUMNS = (
    Column("count", "Count", 6),
    Column("error", "Exception", min_width=14),
    Column("message", "Sample message", min_width=14, flex=True),
    Column("first", "First seen", priority=2),
    Column("last", "Last seen", priority=1),
)


def short_class(error_class: str) -> str:
    return error_class.rsplit(".", 1)[-1]


class FailedScreen(BaseScreen):
    """Flat list (paged, markable) or groups; `r`/`R` retry (R with nothing marked: every failure
    the typed filter matches, counted and confirmed first); detail follows the highlight."""

    MODE = "failed"
    TITLE = "Failed jobs"
    AUTO_FOCUS = "#failed-table"
    CSS_PATH = "failed.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)
    FILTER_PLACEHOLDER = "type:email queue:high error:Timeout since:1h args:ada@ id:3f2a or text — esc clears"

    def __init__(self) -> None:
        super().__init__()
        self.grouped = False
        self.pages = FailedPages(FAILED_PAGE)
        self.groups: list[FailureGroup] | None = None
        self.marked: set[str] = set()
        self.by_key: dict[str, FailedJob] = {}
        self._details: dict[str, JobDetail] = {}
        self._detail_key: str | None = None
        self._search_shown: str | None = None
        self._keys_state: tuple[bool, bool] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="failed-main"):
            yield Static(id="failed-status")
            yield KeyedTable(id="failed-table")
        yield JobDetailView(id="failed-detail")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#failed-table", KeyedTable)

    @property
    def detail(self) -> JobDetailView:
        return self.query_one("#failed-detail", JobDetailView)

    def focus_main(self) -> None:
        self.table.focus()

    def poll_plan(self) -> PollPlan:
        return PollPlan(failed_search=self.needle or None, groups=self.grouped)

    def _refresh_keys(self) -> None:
        """Re-check the footer only when what `check_action` looks at has changed."""
        keys_state = (self.grouped, bool(self.marked))
        if keys_state != self._keys_state:
            self._keys_state = keys_state
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out (None) what does not apply in the current view; read-only hides (False)."""
        allowed = super().check_action(action, parameters)
        if not allowed:
            return allowed
        if action in ("retry", "mark") and self.grouped:
            return None
        return True

    # ---- rendering from the poll ---------------------------------------------------------
    def render_body(self, state: ViewState) -> None:
        snap, extras = state.snapshot, state.extras
        search = self.needle or None
        if snap is not None and not state.stale:
            if self.grouped:
                if extras.groups is not None and extras.plan == self.poll_plan():
                    self.groups = list(extras.groups)
            elif search is None:
                self._take_first_page(snap.failed, snap.failed_total, search)
            elif extras.failed is not None and extras.plan.failed_search == search:
                self._take_first_page(extras.failed, None, search)
        self._render_table()

    def _take_first_page(self, page: tuple[FailedJob, ...], total: int | None, search: str | None) -> None:
        if self._search_shown != search:
            self.pages.reset()
            self._search_shown = search
        self.pages.refresh_first(page, total)

    def _render_table(self) -> None:
        table = self.table
        if self.grouped:
            table.set_columns(GROUP_COLUMNS)
            table.sync(self._group_rows())
        else:
            self.by_key = {str(r.id): r for r in self.pages.rows}
            table.set_columns(FLAT_COLUMNS)
            self.marked &= set(self.by_key)
            table.sync(self._flat_rows())
        self._render_status()
        self._follow_cursor()
        self._refresh_keys()

    def _flat_rows(self) -> list[Row]:
        now, colors = self.now, self.theme_palette
        rows: list[Row] = []
        for r in self.by_key.values():
            key = str(r.id)
            cells = {
                "mark": Text(MARK if key in self.marked else " ", style=colors.accent),
                "when": Text(relative(r.failed_at, now, compact=True)),
                "job": Text(short_id(r.job_id)),
                "type": Text(r.type),
                "queue": Text(r.queue),
                "error": Text(ellipsize(short_class(r.error_class), ERROR_WIDTH), style=colors.error),
                "attempts": Text(str(r.attempts), justify="right"),
                "message": Text(ellipsize(r.error_message, MESSAGE_CAP)),
            }
            rows.append((key, [cells[c.key] for c in FLAT_COLUMNS]))
        return rows

    def _group_rows(self) -> list[Row]:
        now, colors = self.now, self.theme_palette
        rows: list[Row] = []
        for g in self.shown_groups():
            cells = {
                "count": Text(count(g.count), justify="right", style="bold"),
                "error": Text(ellipsize(short_class(g.error_class), ERROR_WIDTH), style=colors.error),
                "message": Text(ellipsize(g.sample_message, MESSAGE_CAP)),
                "first": Text(relative(g.first_seen, now, compact=True)),
                "last": Text(relative(g.last_seen, now, compact=True)),
            }
            rows.append((g.fingerprint, [cells[c.key] for c in GROUP_COLUMNS]))
        return rows

    def _render_status(self) -> None:
        snap = self.state.snapshot
        parts: list[str] = []
        if self.grouped:
            if self.groups is None:
                parts.append("loading groups…")
            else:
                groups = self.shown_groups()
                total = sum(g.count for g in groups)
                parts.append(f"{counted(len(groups), 'group')} · {counted(total, 'failure')}")
        else:
            loaded = len(self.by_key)
            if self.needle:
                more = "" if self.pages.exhausted else "+"
                parts.append(f"{count(loaded)}{more} matching")
            elif snap is not None:
                parts.append(f"{counted(snap.failed_total, 'failure')} · {count(loaded)} loaded")
            if self.pages.loading:
                parts.append("loading more…")
            if self.marked:
                parts.append(f"{len(self.marked)} marked")
        if self.needle:
            parts.append(f"filter “{self.needle}”")
        parts.append("grouped by exception (g: flat list)" if self.grouped else "newest first (g: group)")
        self.query_one("#failed-status", Static).update(" · ".join(parts))

    # ---- highlight, paging, detail -------------------------------------------------------
    @on(DataTable.RowHighlighted, "#failed-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow_cursor()

    def _follow_cursor(self) -> None:
        key = self.table.cursor_key
        if self.grouped:
            group = self._group(key)
            if group is not None:
                self.detail.show_group(group, self.now, self.tz, self.theme_palette)
            else:
                self.detail.show_text("No failure groups." if self.groups is not None else "Loading groups…")
            return
        if key is None:
            self.detail.show_text("No failed jobs." if self.pages.exhausted else "Loading…")
            return
        if self.pages.near_end(self.table.cursor_row):
            self._load_more()
        self._show_detail(key)

    def _load_more(self) -> None:
        before = self.pages.next_before()
        if before is None:
            return
        self.pages.loading = True
        self._load_page(before, self.needle or None, self.jobapp.read_epoch)

    @work(thread=True, exclusive=True, group="failed-page", exit_on_error=False)
    def _load_page(self, before: tuple, search: str | None, epoch: int) -> None:
        try:
            rows = tuple(self.jobapp.engine.failed_jobs(FAILED_PAGE, before, search))
            message = FailedPageLoaded(rows, search, before, epoch=epoch)
        except Exception as exc:
            message = FailedPageLoaded((), search, before, error=describe_error(exc), epoch=epoch)
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_failed_page_loaded(self, message: FailedPageLoaded) -> None:
        if message.search != (self.needle or None) or self.grouped:
            self.pages.loading = False
            return
        if message.epoch != self.jobapp.read_epoch:  # read before an action: may hold what it retried
            self.pages.loading = False
            self._follow_cursor()  # asks again if the cursor is still near the end
            return
        if message.error:
            self.pages.loading = False
            self.notify(f"Could not load more failures: {message.error}", severity="error")
        else:
            self.pages.append(message.rows)
        self._render_table()

    def _show_detail(self, key: str) -> None:
        row = self.by_key.get(key)
        if row is None:
            return
        if key == self._detail_key:
            return  # shown already, or on its way
        self._detail_key = key
        cached = self._details.get(row.job_id)
        if cached is not None:
            self.detail.show_detail(cached, self.now, self.tz, self.theme_palette)
            return
        self.detail.show_text(f"Loading {short_id(row.job_id)}…")
        self.fetch_detail(key, row.job_id)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        message.stop()
        if message.key != self.table.cursor_key or self.grouped:
            return
        if message.detail is None:
            self.detail.show_text(message.error or "This job is gone (retried or pruned).", style="italic")
            return
        if len(self._details) >= DETAIL_CACHE:
            self._details.pop(next(iter(self._details)))
        self._details[message.detail.record.id] = message.detail
        self.detail.show_detail(message.detail, self.now, self.tz, self.theme_palette)

    @on(DataTable.RowSelected, "#failed-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    # ---- actions -------------------------------------------------------------------------
    def action_open(self) -> None:
        key = self.table.cursor_key
        if key is None:
            return
        if self.grouped:
            group = self._group(key)
            if group is not None:
                self.grouped = False
                box = self.query_one("#filter", Input)
                box.remove_class("-hidden")
                box.value = short_class(group.error_class)
                self._apply_filter(box.value)
            return
        self.detail.focus()

    def back(self) -> None:
        if self.detail.has_focus:
            self.table.focus()

    def action_group(self) -> None:
        self.grouped = not self.grouped
        self.table.set_columns(())
        self._detail_key = None
        self.rerender()
        self.jobapp.poll_now()

    def action_mark(self) -> None:
        key = self.table.cursor_key
        if self.grouped or key is None:
            return
        self.marked.symmetric_difference_update({key})
        self._render_table()
        if self.table.cursor_row < self.table.row_count - 1:
            self.table.move_cursor(row=self.table.cursor_row + 1)

    def _group(self, fingerprint: str | None) -> FailureGroup | None:
        return next((g for g in self.shown_groups() if g.fingerprint == fingerprint), None)

    def shown_groups(self) -> list[FailureGroup]:
        """The groups as last polled (less one retried since, until the next poll)."""
        return list(self.groups or [])

    def action_retry(self) -> None:
        row = self.by_key.get(self.table.cursor_key or "")
        if row is None:
            return
        label = f"{short_id(row.job_id)} ({row.type})"
        self.jobapp.run_operation(Operation("retry", (row.job_id,), label=label))

    def action_retry_bulk(self) -> None:
        if self.grouped:
            group = self._group(self.table.cursor_key)
            if group is None:
                return
            op = Operation("retry_group", fingerprint=group.fingerprint, label=short_class(group.error_class))
            question = f"Retry {group.count} job{'s' if group.count != 1 else ''}?"
            detail = f"Every failure of {group.error_class}: {ellipsize(group.sample_message, 60)}"
        else:
            jobs = tuple(self.by_key[k].job_id for k in self.pages_order() if k in self.marked)
            if not jobs:  # nothing marked: every failure the filter matches, counted first
                run_bulk(self.jobapp, "retry", self.needle, "failures", "failure", after=self._after_bulk)
                return
            op = Operation("retry", jobs, label=f"{len(jobs)} jobs")
            question = f"Retry {len(jobs)} job{'s' if len(jobs) != 1 else ''}?"
            detail = "The marked jobs go back on their lanes."

        def decided(yes: bool | None) -> None:
            if yes:
                self.jobapp.run_operation(op)

        self.app.push_screen(ConfirmScreen(question, detail, confirm_label="Retry"), decided)

    def _after_bulk(self) -> None:
        self.pages.reset()
        self._details.clear()
        self._detail_key = None
        self._render_table()

    def pages_order(self) -> list[str]:
        return [str(r.id) for r in self.pages.rows]

    def filter_changed(self) -> None:
        self.pages.reset()
        self._search_shown = self.needle or None
        self.groups = None
        self.marked.clear()
        self.rerender()
        self.jobapp.poll_now()

    def on_outcome(self, outcome: Outcome) -> None:
        op = outcome.operation
        if op.verb == "retry" and outcome.done:
            self.pages.drop_jobs(outcome.done)
            self.marked -= {k for k, r in self.by_key.items() if r.job_id in outcome.done}
        elif op.verb == "retry_group" and op.fingerprint and outcome.count:
            self.pages.drop_fingerprint(op.fingerprint)
            if self.groups is not None:
                self.groups = [g for g in self.groups if g.fingerprint != op.fingerprint]
        else:
            return
        for job_id in outcome.done:
            self._details.pop(job_id, None)
        self._detail_key = None
        self._render_table()
