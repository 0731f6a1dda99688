"""The dashboard: health verdict, lanes, throughput chart with run times per type, workers."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from jobengine.models import QueueStats, ThroughputPoint
from jobtui.actions import ALL, bindings_for
from jobtui.format import counted
from jobtui.messages import PollPlan, ViewState
from jobtui.screens.base import BaseScreen
from jobtui.screens.confirm import confirm_pause
from jobtui.widgets.durations import DurationsTable
from jobtui.widgets.health import HealthBar
from jobtui.widgets.lanes import LanesTable
from jobtui.widgets.throughput import ThroughputChart
from jobtui.widgets.workers import WorkersTable, is_stale

WINDOWS = ("1h", "6h", "24h", "7d")
"""The chart's time windows, in the order `w` cycles them."""
PER = {60: "per minute", 300: "per 5 min", 3600: "per hour"}


class DashboardScreen(BaseScreen):
    """Everything at a glance; `/` filters lanes and workers locally, `w` cycles the chart's window;
    enter opens a lane, `P` pauses or resumes it."""

    MODE = "dashboard"
    TITLE = "Dashboard"
    AUTO_FOCUS = "#lanes"
    CSS_PATH = "dashboard.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)
    FILTER_PLACEHOLDER = "filter lanes and workers by name, host, state or queue — esc clears"

    def __init__(self) -> None:
        super().__init__()
        self.window = WINDOWS[0]

    def compose_body(self) -> ComposeResult:
        yield HealthBar(id="health")
        with Vertical(id="lanes-box", classes="box") as box:
            box.border_title = "Queues"
            yield LanesTable(id="lanes")
        with Horizontal(id="chart-box", classes="box") as box:
            box.border_title = self.chart_title(60)
            yield ThroughputChart(id="chart")
            yield DurationsTable(id="durations")
        with Vertical(id="workers-box", classes="box") as box:
            box.border_title = "Workers"
            yield WorkersTable(id="workers")

    def chart_title(self, step: int) -> str:
        return (f"Throughput {self.window} {PER.get(step, '')} · [$text-primary]processed[/] (left) vs "
                f"[$text-error]failed[/] (right) · run times")

    def poll_plan(self) -> PollPlan:
        return PollPlan(window=self.window)

    def action_cycle_window(self) -> None:
        """The next time window: the chart says it at once, the data follows with the poll."""
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]
        self.rerender()
        self.jobapp.poll_now()

    def focus_main(self) -> None:
        self.query_one(LanesTable).focus()

    def _series(self, state: ViewState) -> tuple[tuple[ThroughputPoint, ...], int, bool]:
        """The chart's points, seconds per point and whether the window's data is still coming."""
        stats = state.extras.window
        if stats is not None and stats.window == self.window:
            return stats.points, stats.step, False
        if self.window == "1h" and state.snapshot is not None:
            return state.snapshot.throughput, 60, False
        return (), 60, True

    def render_body(self, state: ViewState) -> None:
        snap = state.snapshot
        self.query_one(HealthBar).show(snap.health if snap else None, stale=state.stale)
        if snap is None:
            return
        colors, narrow, needle = self.theme_palette, self.narrow, self.needle.lower()
        self.query_one(LanesTable).show(snap.queues, colors, self.now, needle=needle, narrow=narrow)
        points, step, loading = self._series(state)
        self.query_one("#chart-box").border_title = self.chart_title(step)
        self.query_one(ThroughputChart).show(points, self.tz, dark=self.app.current_theme.dark, loading=loading)
        stats = state.extras.window
        self.query_one(DurationsTable).show(
            stats.durations if stats is not None and stats.window == self.window else (), colors)
        slow = {j.id for j in snap.long_running}
        self.query_one(WorkersTable).show(snap.workers, self.now, colors, narrow=narrow, needle=needle, slow=slow)
        over = sum(1 for q in snap.queues if q.over_threshold)
        paused = sum(1 for q in snap.queues if q.paused)
        notes = ([f"{paused} paused"] if paused else []) + ([f"{over} over threshold"] if over else [])
        self.query_one("#lanes-box").border_subtitle = " · ".join(notes)
        workers_box = self.query_one("#workers-box")
        workers_box.border_title = "Workers" + (
            f" · [$text-warning]{counted(len(slow), 'long-running job')}[/]" if slow else "")
        busy = sum(1 for w in snap.workers if w.state == "busy")
        stale = sum(1 for w in snap.workers if is_stale(w, self.now))
        workers_box.border_subtitle = f"{busy}/{len(snap.workers)} busy" + (f" · {stale} stale" if stale else "")

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
