"""80x24 first: columns give way by priority behind a marker, long names shorten in the middle,
every screen fits 80x24, 100x30 and 120x40, and no key crashes any screen."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input

from jobtui import JobTUI
from jobtui.actions import ACTIONS
from jobtui.screens.base import BaseScreen
from jobtui.screens.confirm import ConfirmScreen
from jobtui.screens.failed import FailedScreen
from jobtui.widgets.table import MARKER_KEY, Column, KeyedTable, fit_columns, shorten
from tests.tui.conftest import QUIET, settle
from tests.tui.doubles import LONG_WORKERS, NOW, FakeEngine

SIZES = ((80, 24), (100, 30), (120, 40))


# ---- the fitting rules ------------------------------------------------------------------------
def widths(layout: object) -> dict[str, int]:
    return {c.key: w for c, w in layout.shown}  # type: ignore[attr-defined]


def test_everything_fits_at_its_natural_width_and_the_flex_column_takes_the_rest() -> None:
    cols = (Column("a", "A"), Column("b", "Bee", flex=True, min_width=4))
    layout = fit_columns(cols, {"a": 5, "b": 3}, 30)
    assert widths(layout) == {"a": 5, "b": 30 - 5 - 4} and not layout.hidden and not layout.short_labels


def test_short_labels_come_before_shortening_and_shortening_before_hiding() -> None:
    cols = (
        Column("name", "Worker", min_width=8, cut="middle"),
        Column("pid", "PID", priority=2),
        Column("beat", "Heartbeat", short_label="Beat"),
    )
    natural = {"name": 20, "pid": 4, "beat": 8}
    assert fit_columns(cols, natural, 20 + 4 + 9 + 6).short_labels is False
    short = fit_columns(cols, natural, 20 + 4 + 8 + 6)
    assert short.short_labels and widths(short) == {"name": 20, "pid": 4, "beat": 8}
    squeezed = fit_columns(cols, natural, 10 + 4 + 8 + 6)
    assert widths(squeezed) == {"name": 10, "pid": 4, "beat": 8} and not squeezed.hidden
    hidden = fit_columns(cols, natural, 10 + 10 + 5)  # name at its floor, beat, the "+1…" marker
    assert [c.key for c in hidden.hidden] == ["pid"] and widths(hidden)["name"] == 8


def test_the_highest_priority_number_hides_first_and_the_marker_takes_its_room() -> None:
    cols = (Column("a", "A", 10), Column("b", "B", 10, priority=1), Column("c", "C", 10, priority=2))
    layout = fit_columns(cols, {}, 12 + 12 + 5)  # a, b and the "+1…" marker (3 + 2 cells)
    assert [c.key for c, _ in layout.shown] == ["a", "b"] and [c.key for c in layout.hidden] == ["c"]
    assert [c.key for c in fit_columns(cols, {}, 12 + 5).hidden] == ["b", "c"]


def test_names_shorten_in_the_middle_and_keep_their_style() -> None:
    name = LONG_WORKERS["w-api-1"]
    assert len(name) == 32
    short = shorten(Text(name, style="bold"), 16, "middle")
    assert short.plain == "worker-a…60-0001" and cell_len(short.plain) == 16 and short.style == "bold"
    assert shorten(Text("upstream timed out"), 10).plain == "upstream …"
    assert shorten(Text("fits"), 10).plain == "fits"


# ---- the screens at three sizes ------------------------------------------------------------
def long_app(**kwargs: object) -> JobTUI:
    return JobTUI(FakeEngine(long_names=True, dead_worker=True), refresh=QUIET, clock=lambda: NOW, **kwargs)


def check_tables_fit(app: JobTUI, where: str) -> None:
    for table in app.screen.query(KeyedTable):
        assert table.row_count > 0, (where, table.id)
        assert table.virtual_size.width <= table.scrollable_content_region.width, (where, table.id)
        for column in table.columns.values():
            assert cell_len(column.label.plain) <= column.get_render_width(table) - 2, (where, column.label)
        labels = [str(c.label) for c in table.columns.values()]
        if table.hidden_keys:
            assert labels[-1] == f"+{len(table.hidden_keys)}…", (where, table.id, labels)
        else:
            assert MARKER_KEY not in [str(k.value) for k in table.columns], (where, table.id)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_screen_fits_with_long_names(size: tuple[int, int]) -> None:
    app = long_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key in ("1", "2", "g", "3", "5"):
            await pilot.press(key)
            await settle(pilot)
            check_tables_fit(app, f"{size} after {key}")
        await pilot.press("1")
        await settle(pilot)
        workers = app.screen.query_one("#workers", KeyedTable)
        assert {"name", "state", "beat"} <= set(workers.column_keys)
        shown = [str(workers.get_row(key)[0].plain) for key in workers.row_keys]
        if size[0] < 120:  # shortened in the middle, both ends kept
            assert all("…" in name and name.startswith("worker-") for name in shown), shown
        else:
            assert set(shown) == set(LONG_WORKERS.values())
        lanes = app.screen.query_one("#lanes", KeyedTable)
        assert not lanes.hidden_keys and "spark" in lanes.column_keys
        await pilot.press("2", "g")  # back to the flat list (g grouped it above)
        await settle(pilot)
        failed = app.screen.query_one("#failed-table", KeyedTable)
        assert {"when", "type", "queue", "error", "message"} <= set(failed.column_keys)
        if size[0] == 80:
            assert failed.hidden_keys == ["job", "attempts"]
        elif size[0] >= 100:
            assert not failed.hidden_keys


async def test_a_resize_refits_the_columns_and_keeps_the_cursor_row() -> None:
    app = long_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        for _ in range(3):
            await pilot.press("down")
        table = app.screen.query_one("#failed-table", KeyedTable)
        key = table.cursor_key
        assert not table.hidden_keys
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert table.hidden_keys == ["job", "attempts"] and table.cursor_key == key
        check_tables_fit(app, "after resize")


# ---- every key on every screen ---------------------------------------------------------------
PRINTABLE = string.ascii_letters + string.digits + "/:.,-_+=*!@#[]()<>'\"\\|~`^$%&; "
KEYS = sorted(
    {key for spec in ACTIONS for key in spec.key.split(",")}
    | {"up", "down", "left", "right", "home", "end", "pageup", "pagedown", "enter", "tab", "shift+tab"}
    | {"escape", "space", "backspace", "delete", "ctrl+p", "ctrl+c", "ctrl+l", "f1"}
    | set(PRINTABLE)
    - {"q", "question_mark", "slash"}
) + ["question_mark", "slash"]
"""Every bound key, navigation, and each printable character (q, which quits, is pressed last)."""

Where = tuple[str, bool, str]
"""(mode, grouped, modal): the screen to press keys on."""
WHERE: tuple[Where, ...] = (
    ("dashboard", False, ""),
    ("failed", False, ""),
    ("failed", True, ""),
    ("stuck", False, ""),
    ("job", False, ""),
    ("alerts", False, ""),
    ("failed", False, "help"),
    ("dashboard", False, "lookup"),
    ("failed", False, "confirm"),
    ("dashboard", False, "lane"),
)


async def go_to(app: JobTUI, pilot: Pilot[None], where: Where) -> None:
    """Back to the screen under test, whatever the last key opened or closed."""
    mode, grouped, modal = where
    while len(app.screen_stack) > 1:
        app.pop_screen()
    if app.current_mode != mode:
        await app.switch_mode(mode)
    base = app.screen_stack[0]
    if isinstance(base, BaseScreen) and (base.needle or base.query_one("#filter", Input).has_focus):
        base.action_back()  # close the filter: the next key goes to the screen, not the box
    if isinstance(base, FailedScreen) and base.grouped != grouped:
        base.action_group()
    if mode == "job" and app.current_job is None:
        detail = app.engine.job_detail(app.engine.stuck_ids[0])  # type: ignore[attr-defined]
        assert detail is not None
        app.show_job(detail)
    if modal == "help":
        app.action_help()
    elif modal == "lookup":
        app.action_lookup()
    elif modal == "confirm":
        app.push_screen(ConfirmScreen("Retry 3 jobs?", "The marked jobs go back on their lanes."))
    elif modal == "lane":  # the lane view is pushed over the dashboard
        app.open_lane("low")
    await pilot.pause()


def on_target(app: JobTUI, where: Where) -> bool:
    mode, grouped, modal = where
    base = app.screen_stack[0]
    if app.current_mode != mode or not isinstance(base, BaseScreen):
        return False
    if isinstance(base, FailedScreen) and base.grouped != grouped:
        return False
    if isinstance(app.focused, Input) and modal != "lookup":
        return False
    return (len(app.screen_stack) > 1) == bool(modal)


@pytest.mark.parametrize("where", WHERE, ids=lambda w: "-".join(filter(None, (w[0], "grouped" * w[1], w[2]))))
async def test_no_key_crashes_any_screen(where: Where, make_app: Callable[..., JobTUI]) -> None:
    app = long_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await go_to(app, pilot, where)
        for key in KEYS:
            if not app.is_running:
                break
            if not on_target(app, where):
                await go_to(app, pilot, where)
            await pilot.press(key)
            await pilot.pause()
            assert app._exception is None, (where, key)
        if app.is_running and not where[2]:  # and every character typed into the filter box
            await go_to(app, pilot, where)
            await pilot.press("slash", *PRINTABLE, "backspace", "enter", "escape", "escape")
            await settle(pilot)
        assert app._exception is None, where
        await go_to(app, pilot, where)
        await pilot.press("q")
        await pilot.pause()
        assert app._exception is None, where
