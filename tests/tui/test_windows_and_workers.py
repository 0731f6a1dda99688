"""The chart's time windows and run times per type, and what the workers table says about jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from textual.widgets import DataTable

from jobengine.models import WorkerInfo
from jobtui import JobTUI
from jobtui.format import count
from jobtui.widgets.colors import Palette
from jobtui.widgets.throughput import tick_label
from jobtui.widgets.workers import job_cell
from tests.tui.conftest import settle
from tests.tui.doubles import NOW, FakeEngine

AppFactory = Callable[..., JobTUI]
COLORS = Palette(error="#ff0000", warning="#ffaa00", success="#00ff00", accent="#ffff00", muted="#777777",
                 primary="#0000ff")


def busy(started_ago: float, job_type: str = "reports.finance.export_ledger") -> WorkerInfo:
    return WorkerInfo("w", "h", 1, "busy", "170d7fcf-aaaa-bbbb-cccc-dddddddddddd", ("default",), NOW,
                      current_job_type=job_type, current_job_started=NOW - timedelta(seconds=started_ago))


def test_a_busy_cell_gives_up_the_type_before_the_time_and_the_marker_first() -> None:
    draw = job_cell(busy(130), NOW, stale=False, slow=True, style="")
    assert draw(50).plain == "▲ 170d7fcf reports.finance.export_ledger 2m 10s"
    assert draw(30).plain == "▲ 170d7fcf report…edger 2m 10s"
    assert draw(22).plain == "170d7fcf rep…er 2m 10s"  # the ▲ goes first (the colour stays)
    assert draw(16).plain == "170d7fcf 2m 10s"  # then the type
    assert draw(8).plain == "170d7fcf"
    assert job_cell(busy(3), NOW, stale=False, slow=False, style="")(41).plain == \
        "170d7fcf reports.finance.export_ledger 3s"


def test_an_idle_cell_says_since_when() -> None:
    idle = WorkerInfo("w", "h", 1, "idle", None, ("default",), NOW, idle_since=NOW - timedelta(minutes=4))
    assert job_cell(idle, NOW, stale=False, slow=False, style="")(20).plain == "since 13:59"
    days = WorkerInfo("w", "h", 1, "idle", None, ("default",), NOW, idle_since=NOW - timedelta(days=2))
    assert job_cell(days, NOW, stale=False, slow=False, style="")(30).plain == "since Mar 12 14:03"
    unknown = WorkerInfo("w", "h", 1, "idle", None, ("default",), NOW)
    assert job_cell(unknown, NOW, stale=False, slow=False, style="")(20).plain == "—"
    assert job_cell(idle, NOW, stale=True, slow=False, style="")(20).plain == "—"  # a stale worker: nothing known


def test_ticks_say_the_time_within_a_day_and_the_day_beyond() -> None:
    at = datetime(2025, 3, 14, 14, 5, tzinfo=UTC)
    assert tick_label(at, UTC, 3600) == "14:05"
    assert tick_label(at, UTC, 86400) == "14:05"
    assert tick_label(at, UTC, 7 * 86400) == "Fri 14h"


async def test_w_cycles_the_window_and_the_run_times_follow(make_app: AppFactory, engine: FakeEngine) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        box = app.screen.query_one("#chart-box")
        assert "Throughput 1h per minute" in str(box.border_title)
        table = app.screen.query_one("#durations", DataTable)
        assert table.row_count == 5 and ("throughput", "1h") in engine.calls
        for window, per in (("6h", "per 5 min"), ("24h", "per hour"), ("7d", "per hour"), ("1h", "per minute")):
            await pilot.press("w")
            await settle(pilot)
            assert f"Throughput {window} {per}" in str(box.border_title)
            assert ("throughput", window) in engine.calls
            stats = engine.throughput(window)
            runs = [table.get_row(t.type)[1].plain for t in stats.durations]
            assert runs == [count(d.runs) for d in stats.durations]


async def test_the_workers_box_counts_the_long_running_jobs(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "2 long-running jobs" in str(app.screen.query_one("#workers-box").border_title)
        table = app.screen.query_one("#workers", DataTable)
        cell = table.get_row("w-batch-1")[[str(c.label) for c in table.columns.values()].index("Current job")]
        assert cell.plain.startswith("▲ ") and cell.plain.endswith("2h 15m")
