"""The Alerts screen (key 5): the last notices newest first, their body, the empty and outage
states, the nav bar's firing count; against the FakeEngine, then once against real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace

import pytest
from textual.widgets import Static

from jobengine import Engine
from jobengine.alerts.state import AlertRecord, now_utc, record
from jobengine.config import Settings
from jobtui import JobTUI
from jobtui.messages import PollExtras
from jobtui.screens.alerts import EMPTY, SETUP, AlertDetailView, AlertsScreen
from jobtui.widgets.banner import Banner
from jobtui.widgets.navbar import NavBar
from jobtui.widgets.table import KeyedTable
from tests.tui.alert_data import ALERTS
from tests.tui.conftest import QUIET, base_screen, settle
from tests.tui.doubles import NOW, FakeEngine
from tests.tui.test_pilot import text_of

AppFactory = Callable[..., JobTUI]


def screen_of(app: JobTUI) -> AlertsScreen:
    return base_screen(app, AlertsScreen)


def titles(app: JobTUI) -> list[str]:
    screen = screen_of(app)
    return [screen.records[key].title for key in screen.table.row_keys]


def pane(app: JobTUI) -> str:
    return text_of(app.screen.query_one(AlertDetailView).query_one("#alert-body", Static))


def status(app: JobTUI) -> str:
    return text_of(app.screen.query_one("#alerts-status", Static)).strip()


async def test_5_shows_the_notices_newest_first_and_the_pane_follows(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "5 Alerts 3" in text_of(app.screen.query_one(NavBar))  # counted on every screen
        await pilot.press("5")
        await settle(pilot)
        assert app.current_mode == "alerts"
        assert titles(app) == [r.title for r in ALERTS]
        assert "6 notices, newest first · 3 alerts firing" in status(app)
        table = app.screen.query_one("#alerts-table", KeyedTable)
        first = [cell.plain for cell in table.get_row(table.row_keys[0])]
        assert first[:2] == ["40s ago", "● firing"] and first[-1] == "✗ 1 of 2"
        assert "slack://…" in pane(app) and "NOT delivered" in pane(app) and "burst:3f9c2a7e1b04" in pane(app)
        await pilot.press("down")
        await settle(pilot)
        assert "PostgreSQL unreachable: connection refused" in pane(app)  # the health notice's body
        await pilot.press("down", "down")
        await settle(pilot)
        body = pane(app)
        assert "Long wait on queue low" in body and "no target" in body  # no target took it
        assert [c.plain for c in table.get_row(table.row_keys[3])][-1] == "✗ failed"
        await pilot.press("enter")
        assert app.focused is app.screen.query_one(AlertDetailView)
        await pilot.press("escape")
        assert app.focused is table


async def test_the_cursor_stays_on_its_notice_when_a_new_one_arrives(engine: FakeEngine,
                                                                     make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("down", "down")
        table = screen_of(app).table
        key = table.cursor_key
        fresh = AlertRecord(NOW, "resolved", "health", "Resolved: jobengine health is failing", "Healthy now.",
                            "success", ("health",), ("json://alerts.example.com",))
        engine.alerts.insert(0, fresh)
        app.poll_now()
        await settle(pilot)
        assert titles(app)[0] == fresh.title and table.cursor_key == key
        assert "Resolved after 1 h 12 min" in pane(app)  # the pane still shows the same notice
        assert "2 alerts firing" in status(app)  # health resolved now
        assert "5 Alerts 2" in text_of(app.screen.query_one(NavBar))


async def test_the_filter_narrows_the_notices(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("slash", *"stuck", "enter")
        await settle(pilot)
        assert titles(app) == ["Resolved: Job stuck: 6f1e0c2a", "Job stuck: 6f1e0c2a"]
        assert "2 match the filter" in status(app)


async def test_no_notice_yet_says_how_to_configure_them(engine: FakeEngine, make_app: AppFactory) -> None:
    engine.alerts = []
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert status(app) == EMPTY
        assert screen_of(app).table.row_count == 0
        nav = text_of(app.screen.query_one(NavBar))
        assert "5 Alerts " in nav and "5 Alerts 0" not in nav


async def test_an_engine_without_alert_urls_says_nothing_is_sent(engine: FakeEngine, make_app: AppFactory) -> None:
    engine.alerts = []
    engine.settings = SimpleNamespace(alert_urls=(), alerts_enabled=True, bulk_cap=10_000)  # type: ignore[attr-defined]
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert status(app) == SETUP["no urls"]


async def test_an_outage_keeps_the_last_notices_greyed_and_recovers(engine: FakeEngine,
                                                                    make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        engine.outage = True
        app.poll_now()
        await settle(pilot)
        screen = screen_of(app)
        assert screen.has_class("-stale") and "Redis unreachable" in text_of(screen.query_one(Banner))
        assert titles(app) == [r.title for r in ALERTS]
        engine.outage = False
        engine.alerts_down = True  # the snapshot answers, the alerts' read does not
        app.poll_now()
        await settle(pilot)
        assert not screen.has_class("-stale") and screen.has_class("-unread")
        assert titles(app) == [r.title for r in ALERTS] and "not refreshed: Redis unreachable" in status(app)
        assert not screen.query_one(Banner).has_class("-partial")  # said once, on this screen
        engine.alerts_down = False
        app.poll_now()
        await settle(pilot)
        assert not screen.has_class("-unread") and "not refreshed" not in status(app)


async def test_alerts_down_before_any_read_does_not_crash(engine: FakeEngine, make_app: AppFactory) -> None:
    engine.alerts_down = True
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert status(app).startswith("alerts cannot be read: Redis unreachable")
        assert app.is_running


def test_firing_counts_keys_whose_newest_notice_fires_but_not_new_failure_groups() -> None:
    group = AlertRecord(NOW, "firing", "failures", "New failure group", "", "warning", ("group:ab",))
    assert PollExtras(alerts=(group, *ALERTS)).firing == 3
    assert PollExtras().firing is None
    assert PollExtras(alerts=(replace(ALERTS[0], status="resolved"), *ALERTS[1:])).firing == 2


# ---- against the real engine ---------------------------------------------------------------------
@pytest.fixture
def live(redis_url: str, database_url: str) -> Iterator[Engine]:
    engine = Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                                  alert_urls=("json://127.0.0.1:9/hook",)))
    yield engine
    engine.close()


async def test_a_notice_recorded_in_redis_shows_on_the_screen(live: Engine) -> None:
    """A real test notice (to a port nothing listens on: not delivered) and a recorded firing one."""
    sent = live.alerter().send_test()
    assert sent.failed and not sent.delivered
    record(live.connection, AlertRecord(now_utc(), "firing", "stuck", "Job stuck: 0123abcd", "Job 0123abcd ...",
                                        "failure", ("stuck:0123abcd",), ("json://hooks.example.com",)))
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert titles(app) == ["Job stuck: 0123abcd", "jobengine test notice"]
        table = screen_of(app).table
        assert [c.plain for c in table.get_row(table.row_keys[1])][-1] == "✗ failed"
        assert "1 alert firing" in status(app) and "5 Alerts 1" in text_of(app.screen.query_one(NavBar))
        await pilot.press("down")
        await settle(pilot)
        assert "A test notice from `jobtui alerts test`" in pane(app) and "json://127.0.0.1" in pane(app)
