"""SVG snapshots of the console fed by the FakeEngine (fixed data, fixed clock, fixed size).

Regenerate after a deliberate change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs in tests/tui/__snapshots__/ before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from jobengine.models import Outage
from jobtui import JobTUI
from jobtui.screens.dashboard import DashboardScreen
from tests.tui.conftest import QUIET, settle, wait_until
from tests.tui.doubles import NOW, FakeEngine

Compare = Callable[..., bool]
WIDE = (120, 40)
SMALL = (80, 24)


def app(engine: FakeEngine | None = None, *, read_only: bool = False) -> JobTUI:
    return JobTUI(engine or FakeEngine(), refresh=QUIET, read_only=read_only, clock=lambda: NOW)


def keys(*presses: str, theme: str | None = None,
         until: Callable[[Pilot[Any]], bool] | None = None) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A run_before: wait for the first poll, press keys (settling after each), wait for `until`
    (what the keys asked for has arrived: a loaded machine may deliver it a few polls later),
    hide toasts."""

    async def run(pilot: Pilot[Any]) -> None:
        if theme:
            pilot.app.theme = theme
        await settle(pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot)
        if presses:  # a key's own poll (the chart window's read) may still be on its way
            await settle(pilot)
        if until is not None:
            await wait_until(pilot, lambda: until(pilot), timeout=30.0)
            await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    return run


def test_dashboard(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys())


def test_dashboard_80x24(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=SMALL, run_before=keys())


def test_dashboard_light_theme(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys(theme="textual-light"))


def test_failed_list(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys("2", "down", "down"))


def test_failed_list_80x24(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=SMALL, run_before=keys("2"))


def test_failed_grouped(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys("2", "g", "down"))


def test_failed_marked_and_confirm_dialog(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys("2", "space", "space", "space", "R"))


def test_job_detail_from_lookup(snap_compare: Compare) -> None:
    engine = FakeEngine()
    prefix = engine.failures[7].job_id[:6]
    assert snap_compare(app(engine), terminal_size=WIDE, run_before=keys("j", *prefix, "enter"))


def test_stuck_list(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys("3"))


def test_read_only_failed_list(snap_compare: Compare) -> None:
    assert snap_compare(app(read_only=True), terminal_size=WIDE, run_before=keys("2"))


def test_help_screen(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=WIDE, run_before=keys("2", "question_mark"))


def test_outage_banner(snap_compare: Compare) -> None:
    engine = FakeEngine()

    async def go_down(pilot: Pilot[Any]) -> None:
        await keys()(pilot)
        engine.outage = True
        pilot.app.poll_now()  # type: ignore[attr-defined]
        await keys()(pilot)

    assert snap_compare(app(engine), terminal_size=WIDE, run_before=go_down)


def test_partial_outage_banner_80x24(snap_compare: Compare) -> None:
    engine = FakeEngine()
    engine.partial_outages = (Outage("postgres", "PostgreSQL unreachable: connection refused"),)
    assert snap_compare(app(engine), terminal_size=SMALL, run_before=keys("2"))


def test_alerts_none_sent_yet_80x24(snap_compare: Compare) -> None:
    engine = FakeEngine()
    engine.alerts = []
    assert snap_compare(app(engine), terminal_size=SMALL, run_before=keys("5"))


# ---- every screen at 80x24, 100x30 and 120x40, with 32-character worker names and long job types
SIZES = {"80x24": (80, 24), "100x30": (100, 30), "120x40": (120, 40)}
SCREENS = {
    "dashboard": (),
    "failed": ("2",),
    "failed-grouped": ("2", "g"),
    "stuck": ("3",),
    "job": ("3", "enter"),
    "alerts": ("5", "down"),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_each_screen_at_each_size_with_long_names(snap_compare: Compare, screen: str, size: str) -> None:
    engine = FakeEngine(long_names=True, dead_worker=True)
    assert snap_compare(app(engine), terminal_size=SIZES[size], run_before=keys(*SCREENS[screen]))


# ---- the throughput chart's time windows (w cycles 1h -> 6h -> 24h -> 7d) and run times per type
WINDOW_PRESSES = {"6h": ("w",), "24h": ("w", "w"), "7d": ("w", "w", "w")}


@pytest.mark.parametrize("size", ["80x24", "120x40"])
@pytest.mark.parametrize("window", WINDOW_PRESSES)
def test_dashboard_chart_windows(snap_compare: Compare, window: str, size: str) -> None:
    engine = FakeEngine(long_names=True, dead_worker=True)
    assert snap_compare(app(engine), terminal_size=SIZES[size],
                        run_before=keys(*WINDOW_PRESSES[window], until=window_loaded(window)))


def window_loaded(window: str) -> Callable[[Pilot[Any]], bool]:
    """The dashboard shows `window` and its data (not the "loading" placeholder) has arrived."""

    def loaded(pilot: Pilot[Any]) -> bool:
        screen = pilot.app.screen
        if not isinstance(screen, DashboardScreen) or screen.window != window:
            return False
        stats = screen.state.extras.window
        return stats is not None and stats.window == window

    return loaded
