"""Stuck jobs: processing longer than the threshold, with worker and elapsed time."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from jobengine.models import JobRecord
from jobtui.actions import ALL, bindings_for
from jobtui.format import absolute, duration, relative, short_id
from jobtui.messages import DetailLoaded, Operation, Outcome, ViewState
from jobtui.screens.base import BaseScreen
from jobtui.screens.confirm import ConfirmScreen
from jobtui.widgets.detail import JobDetailView
from jobtui.widgets.table import Column, KeyedTable, Row

MARK = "●"
COLUMNS = (
    Column("mark", " ", 1),
    Column("job", "Job", 8, priority=3),
    Column("type", "Type", priority=1, min_width=14, cut="middle"),
    Column("queue", "Queue", priority=4, min_width=8),
    Column("worker", "Worker", priority=2, min_width=16, cut="middle"),
    Column("started", "Started", priority=5),
    Column("elapsed", "Elapsed"),
    Column("attempts", "Att", priority=6),
)


class StuckScreen(BaseScreen):
    """`c` stops the highlighted job, `space` marks, `C` stops the marked ones, enter opens one."""

    MODE = "stuck"
    TITLE = "Stuck jobs"
    AUTO_FOCUS = "#stuck-table"
    CSS_PATH = "stuck.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)

    def __init__(self) -> None:
        super().__init__()
        self.marked: set[str] = set()
        self.jobs: dict[str, JobRecord] = {}
        self._detail_key: str | None = None
        self._any_marked = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="stuck-main"):
            yield Static(id="stuck-status")
            yield KeyedTable(id="stuck-table")
            yield Static(id="stuck-hint")
        yield JobDetailView(id="stuck-detail")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#stuck-table", KeyedTable)

    def focus_main(self) -> None:
        self.table.focus()

    def render_body(self, state: ViewState) -> None:
        snap = state.snapshot
        stuck = list(snap.stuck) if snap else []
        needle = self.needle.lower()
        shown = [
            r for r in stuck
            if not needle or any(needle in (v or "").lower() for v in (r.id, r.type, r.queue, r.worker))
        ]
        self.jobs = {r.id: r for r in shown}
        self.marked &= set(self.jobs)
        self.table.set_columns(COLUMNS)
        self.table.sync(self._rows(shown))
        status = f"{len(stuck)} job{'' if len(stuck) == 1 else 's'} processing longer than the threshold"
        if snap is None:
            status = "waiting for the first poll…"
        if self.marked:
            status += f" · {len(self.marked)} marked"
        self.query_one("#stuck-status", Static).update(status)
        self._render_hint()
        if bool(self.marked) != self._any_marked:
            self._any_marked = bool(self.marked)
            self.refresh_bindings()

    def _rows(self, records: list[JobRecord]) -> list[Row]:
        now, colors = self.now, self.theme_palette
        rows: list[Row] = []
        for r in records:
            elapsed = (now - r.started_at).total_seconds() if r.started_at else None
            cells = {
                "mark": Text(MARK if r.id in self.marked else " ", style=colors.accent),
                "job": Text(short_id(r.id)),
                "type": Text(r.type),
                "queue": Text(r.queue),
                "worker": Text(r.worker or "—"),
                "started": Text(relative(r.started_at, now, compact=True)),
                "elapsed": Text(duration(elapsed), style=f"bold {colors.warning}", justify="right"),
                "attempts": Text(str(r.attempts), justify="right"),
            }
            rows.append((r.id, [cells[c.key] for c in COLUMNS]))
        return rows

    def _render_hint(self) -> None:
        record = self.jobs.get(self.table.cursor_key or "")
        hint = self.query_one("#stuck-hint", Static)
        detail = self.query_one(JobDetailView)
        if record is None:
            hint.update("Nothing is stuck." if self.state.snapshot else "")
            detail.show_text("")
            self._detail_key = None
            return
        hint.update(f"{record.id} · started {absolute(record.started_at, self.tz)} · enter opens it")
        if record.id != self._detail_key:
            self._detail_key = record.id
            detail.show_text(f"Loading {short_id(record.id)}…")
            self.fetch_detail(record.id, record.id)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        message.stop()
        if message.key != self.table.cursor_key:
            return
        view = self.query_one(JobDetailView)
        if message.detail is None:
            view.show_text(message.error or "This job is gone.", style="italic")
        else:
            view.show_detail(message.detail, self.now, self.tz, self.theme_palette)

    @on(DataTable.RowHighlighted, "#stuck-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._render_hint()

    @on(DataTable.RowSelected, "#stuck-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`C` is greyed out (None) until something is marked; read-only hides it (False)."""
        allowed = super().check_action(action, parameters)
        if allowed and action == "cancel_bulk" and not self.marked:
            return None
        return allowed

    def action_open(self) -> None:
        key = self.table.cursor_key
        if key:
            self.jobapp.open_job(key)

    def action_mark(self) -> None:
        key = self.table.cursor_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self.rerender()
        if self.table.cursor_row < self.table.row_count - 1:
            self.table.move_cursor(row=self.table.cursor_row + 1)

    def action_cancel(self) -> None:
        record = self.jobs.get(self.table.cursor_key or "")
        if record is not None:
            label = f"{short_id(record.id)} ({record.type})"
            self.jobapp.run_operation(Operation("cancel", (record.id,), label=label, past="Stopped"))

    def action_cancel_bulk(self) -> None:
        ids = tuple(k for k in self.table.row_keys if k in self.marked)
        if not ids:
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self.jobapp.run_operation(Operation("cancel", ids, label=f"{len(ids)} jobs", past="Stopped"))

        plural = "s" if len(ids) != 1 else ""
        self.app.push_screen(
            ConfirmScreen(f"Stop {len(ids)} running job{plural}?", "Their workers are told to stop them now.",
                          confirm_label="Stop"),
            decided,
        )

    def on_outcome(self, outcome: Outcome) -> None:
        if outcome.operation.verb == "cancel" and outcome.done:
            self.marked -= set(outcome.done)
            self._detail_key = None
            self.rerender()
