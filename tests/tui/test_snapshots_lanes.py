"""SVG snapshots of the lane view, a paused lane and the bulk-by-filter dialog (FakeEngine, fixed
clock) at 80x24 and 120x40. Regenerate with `--snapshot-update` and look at the SVGs first."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobengine.models import PauseInfo
from tests.tui.doubles import NOW, FakeEngine
from tests.tui.test_snapshots import SMALL, WIDE, Compare, app, keys

SIZES = pytest.mark.parametrize("size", [SMALL, WIDE], ids=["80x24", "120x40"])
LOW_LANE = ("down", "down", "down", "enter")
"""From the dashboard: the fourth lane row (low), opened."""


def paused_engine() -> FakeEngine:
    engine = FakeEngine()
    engine.paused["low"] = PauseInfo("ada@web-01", NOW - timedelta(minutes=4), "mail provider down")
    return engine


@SIZES
def test_lane_view_scheduled(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, run_before=keys(*LOW_LANE, "s", "down"))


@SIZES
def test_lane_view_queued_of_a_paused_lane(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(app(paused_engine()), terminal_size=size, run_before=keys(*LOW_LANE))


@SIZES
def test_dashboard_with_a_paused_lane(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(app(paused_engine()), terminal_size=size, run_before=keys())


@SIZES
def test_bulk_retry_by_filter_asks_with_the_count(snap_compare: Compare, size: tuple[int, int]) -> None:
    typed = tuple("type:billing.send_invoice since:2h")
    assert snap_compare(app(), terminal_size=size,
                        run_before=keys("2", "slash", *(c if c != " " else "space" for c in typed), "enter", "R"))
