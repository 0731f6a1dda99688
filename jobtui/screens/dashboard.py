"""The dashboard: health verdict, lanes, throughput chart, workers."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from jobengine.models import QueueStats
from jobtui.actions import ALL, bindings_for
from jobtui.messages import ViewState
from jobtui.screens.base import BaseScreen
from jobtui.screens.confirm import confirm_pause
from jobtui.widgets.health import HealthBar
from jobtui.widgets.lanes import LanesTable
from jobtui.widgets.throughput import ThroughputChart
from jobtui.widgets.workers import WorkersTable, is_stale


class DashboardScreen(BaseScreen):
    """Everything at a glance; `/` filters lanes and workers locally; enter opens a lane, `P`
    pauses or resumes it."""

    MODE = "dashboard"
    TITLE = "Dashboard"
    AUTO_FOCUS = "#lanes"
    CSS_PATH = "dashboard.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)
    FILTER_PLACEHOLDER = "filter lanes and workers by name, host, state or queue — esc clears"

    def compose_body(self) -> ComposeResult:
        yield HealthBar(id="health")
        with Vertical(id="lanes-box", classes="box") as box:
            box.border_title = "Queues"
            yield LanesTable(id="lanes")
        with Vertical(id="chart-box", classes="box") as box:
            box.border_title = (
                "Throughput per minute · [$text-primary]processed[/] (left axis) vs [$text-error]failed[/] (right axis)"
            )
            yield ThroughputChart(id="chart")
        with Vertical(id="workers-box", classes="box") as box:
            box.border_title = "Workers"
            yield WorkersTable(id="workers")

    def focus_main(self) -> None:
        self.query_one(LanesTable).focus()

    def render_body(self, state: ViewState) -> None:
        snap = state.snapshot
        self.query_one(HealthBar).show(snap.health if snap else None, stale=state.stale)
        if snap is None:
            return
        colors, narrow, needle = self.theme_palette, self.narrow, self.needle.lower()
        self.query_one(LanesTable).show(snap.queues, colors, self.now, needle=needle, narrow=narrow)
        self.query_one(ThroughputChart).show(snap.throughput, self.tz, dark=self.app.current_theme.dark)
        self.query_one(WorkersTable).show(snap.workers, self.now, colors, narrow=narrow, needle=needle)
        over = sum(1 for q in snap.queues if q.over_threshold)
        paused = sum(1 for q in snap.queues if q.paused)
        notes = ([f"{paused} paused"] if paused else []) + ([f"{over} over threshold"] if over else [])
        self.query_one("#lanes-box").border_subtitle = " · ".join(notes)
        busy = sum(1 for w in snap.workers if w.state == "busy")
        stale = sum(1 for w in snap.workers if is_stale(w, self.now))
        self.query_one("#workers-box").border_subtitle = f"{busy}/{len(snap.workers)} busy" + (
            f" · {stale} stale" if stale else ""
        )

    # ---- lanes ---------------------------------------------------------------------------
    def highlighted_lane(self) -> QueueStats | None:
        snap = self.state.snapshot
        key = self.query_one(LanesTable).cursor_key
        return next((q for q in snap.queues if q.name == key), None) if snap is not None else None

    @on(DataTable.RowSelected, "#lanes")
    def _lane_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_lane()

    def action_open_lane(self) -> None:
        lane = self.highlighted_lane()
        if lane is not None:
            self.jobapp.open_lane(lane.name)

    def action_toggle_pause(self) -> None:
        lane = self.highlighted_lane()
        if lane is not None:
            confirm_pause(self.jobapp, lane.name, lane.paused, self.now)
