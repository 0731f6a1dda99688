"""Behaviour of the console driven through Textual's Pilot against the FakeEngine."""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator, Callable

from rich.console import Console
from textual.content import Content
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from jobengine.errors import UnavailableError
from jobengine.models import Outage, Snapshot
from jobengine.types import JobStatus
from jobtui import JobTUI
from jobtui.commands import JobCommands
from jobtui.screens.base import BaseScreen
from jobtui.screens.bulk import BulkScreen
from jobtui.screens.confirm import ConfirmScreen
from jobtui.screens.failed import FailedScreen
from jobtui.screens.help import HelpScreen
from jobtui.screens.lookup import LookupScreen
from jobtui.widgets.banner import Banner
from jobtui.widgets.table import KeyedTable
from tests.tui.conftest import failed_screen, settle, shown_job_ids, wait_until
from tests.tui.doubles import FakeEngine

AppFactory = Callable[..., JobTUI]


def text_of(widget: Static) -> str:
    """The plain text a Static shows, whatever it was given (str, Content or a Rich renderable)."""
    content = widget.content
    if isinstance(content, str | Content):
        return str(content)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


def footer_keys(app: JobTUI) -> set[str]:
    return {key.key for key in app.screen.query_one(Footer).query(FooterKey)}


def disabled_footer_keys(app: JobTUI) -> set[str]:
    return {key.key for key in app.screen.query_one(Footer).query(FooterKey) if key.has_class("-disabled")}


def notifications(app: JobTUI) -> list[tuple[str, str, str]]:
    return [(n.title, n.message, n.severity) for n in app._notifications]


async def test_first_poll_fills_the_dashboard(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        lanes = app.screen.query_one("#lanes", KeyedTable)
        assert lanes.row_keys == ["critical", "high", "default", "low"]
        assert app.screen.query_one("#workers", KeyedTable).row_keys == ["w-api-1", "w-batch-1", "w-batch-2"]
        assert "WARNING" in text_of(app.screen.query_one("#health", Static))
        assert "data 14:03:12" in app.sub_title


async def test_r_retries_the_highlighted_failed_job_which_then_leaves(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "down")
        await settle(pilot)
        target = shown_job_ids(app)[2]
        await pilot.press("r")
        await settle(pilot)
        assert engine.called("retry") == [(target,)]
        assert target not in shown_job_ids(app)
        assert target not in [f.job_id for f in engine.failed_jobs(500)]
        assert any(t == "Done" and target[:8] in m for t, m, _ in notifications(app))
        # the cursor stays where the retried row was: on the row that took its place
        assert failed_screen(app).table.cursor_row == 2


async def test_c_cancels_a_scheduled_job_found_by_lookup(engine: FakeEngine, make_app: AppFactory) -> None:
    scheduled = engine.scheduled_ids[0]
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        assert isinstance(app.screen, LookupScreen)
        await pilot.press(*scheduled[:4], "enter")
        await settle(pilot)
        assert app.current_mode == "job"
        assert app.current_job is not None and app.current_job.record.id == scheduled
        await pilot.press("c")
        await settle(pilot)
        assert engine.called("cancel") == [(scheduled,)]
        assert engine.status_of(scheduled) is JobStatus.CANCELED
        # the refresh after the action re-read the job shown
        assert app.current_job.record.status is JobStatus.CANCELED


async def test_bulk_retry_asks_with_the_count_and_acts_only_on_yes(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        marked = shown_job_ids(app)[:3]
        await pilot.press("space", "space", "space")
        assert len(failed_screen(app).marked) == 3
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Retry 3 jobs?"
        await pilot.press("n")
        await settle(pilot)
        assert engine.called("retry") == []
        assert len(failed_screen(app).marked) == 3
        await pilot.press("R")
        await pilot.press("y")
        await settle(pilot)
        assert engine.called("retry") == [(jid,) for jid in marked]
        assert not set(marked) & set(shown_job_ids(app))
        assert failed_screen(app).marked == set()


async def test_R_on_a_group_retries_the_whole_group_after_confirming(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "g")
        await settle(pilot)
        screen = failed_screen(app)
        assert screen.groups is not None and len(screen.groups) == 4
        top = screen.groups[0]
        assert screen.table.cursor_key == top.fingerprint
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == f"Retry {top.count} jobs?"
        await pilot.press("y")
        await settle(pilot)
        assert engine.called("retry_group") == [(top.fingerprint,)]
        assert top.fingerprint not in screen.table.row_keys
        assert len(engine.failures) == 120 - top.count


async def test_keys_that_do_not_apply_are_greyed_out(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert disabled_footer_keys(app) == set()  # nothing marked: R acts on all matching (asks first)
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, BulkScreen) and not isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert engine.called("retry") == [] and engine.called("retry_group") == [] and engine.called("bulk") == []
        await pilot.press("space")
        await pilot.pause()
        assert disabled_footer_keys(app) == set()
        await pilot.press("g")
        await settle(pilot)
        assert disabled_footer_keys(app) == {"r", "space"}
        await pilot.press("r")
        await settle(pilot)
        assert engine.called("retry") == []


async def test_read_only_hides_and_disables_mutating_actions(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        keys = footer_keys(app)
        assert {"g", "slash", "question_mark", "q"} <= keys
        assert not {"r", "R", "c", "C", "space"} & keys
        assert not {"r", "R"} & set(app.screen.active_bindings)
        await pilot.press("r", "R")
        await settle(pilot)
        assert engine.called("retry") == [] and engine.called("retry_group") == []
        assert not isinstance(app.screen, ConfirmScreen)
        titles = [title async for title in _palette_titles(app)]
        assert "Group" in titles and "Retry" not in titles and "Retry all" not in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = text_of(app.screen.query_one("#help-body", Static))
        assert "Find" in help_text and "Retry" not in help_text and "Cancel" not in help_text
        assert "read-only" in app.sub_title


async def test_outage_shows_banner_greys_data_and_recovers(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        banner = screen.query_one(Banner)
        assert not banner.has_class("-down")
        engine.outage = True
        app.poll_now()
        await settle(pilot)
        assert banner.has_class("-down") and screen.has_class("-stale")
        text = text_of(banner)
        assert "Redis unreachable" in text and "showing data from 14:03:12, retrying" in text
        assert screen.query_one("#lanes", KeyedTable).row_keys == ["critical", "high", "default", "low"]
        assert "OFFLINE" in app.sub_title
        engine.outage = False
        app.poll_now()
        await settle(pilot)
        assert not banner.has_class("-down") and not screen.has_class("-stale")
        assert "OFFLINE" not in app.sub_title


async def test_outage_before_any_data_does_not_crash(make_app: AppFactory) -> None:
    down = FakeEngine()
    down.outage = True
    app = make_app(fake=down)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key in ("2", "3", "4", "5", "1"):
            await pilot.press(key)
            await settle(pilot)
            assert "no data yet, retrying" in text_of(app.screen.query_one(Banner))
        assert app.is_running


async def test_any_exception_from_snapshot_is_an_outage_not_a_crash(make_app: AppFactory) -> None:
    class Broken(FakeEngine):
        def snapshot(self) -> Snapshot:
            raise RuntimeError("boom")

    app = make_app(fake=Broken())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.is_running
        assert "boom" in text_of(app.screen.query_one(Banner))


async def test_partial_outage_shows_the_errors_without_greying(engine: FakeEngine, make_app: AppFactory) -> None:
    engine.partial_outages = (Outage("postgres", "PostgreSQL unreachable: connection refused"),)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        banner = app.screen.query_one(Banner)
        assert banner.has_class("-partial") and not banner.has_class("-down")
        assert "PostgreSQL unreachable" in text_of(banner)
        assert not app.screen.has_class("-stale")


async def test_p_pauses_and_resumes_polling(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app(refresh=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: engine.snapshots >= 3)  # it polls by itself
        await pilot.press("p")
        await settle(pilot)
        assert "PAUSED" in app.sub_title
        assert "p" in footer_keys(app)
        paused_at = engine.snapshots
        await pilot.pause(0.4)
        assert engine.snapshots == paused_at
        await pilot.press("p")
        await wait_until(pilot, lambda: engine.snapshots >= paused_at + 3)
        assert "PAUSED" not in app.sub_title


async def test_polls_never_overlap_and_input_does_not_wait_for_them(make_app: AppFactory) -> None:
    class Gated(FakeEngine):
        """snapshot() blocks until the test opens the gate; counts concurrent calls."""

        def __init__(self) -> None:
            super().__init__()
            self.gate = threading.Event()
            self.active = 0
            self.most = 0
            self.guard = threading.Lock()

        def snapshot(self) -> Snapshot:
            with self.guard:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                self.gate.wait(5)
                return super().snapshot()
            finally:
                with self.guard:
                    self.active -= 1

    gated = Gated()
    app = make_app(refresh=0.01, fake=gated)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: gated.active == 1)  # the first poll is stuck in the engine...
        await pilot.press("2", "3")
        assert app.current_mode == "stuck"  # ...and keys are handled all the same
        for _ in range(5):
            app.poll_now()  # explicit refreshes while one is in flight queue a single follow-up
        await pilot.pause(0.1)
        assert gated.active == 1 and gated.most == 1
        gated.gate.set()
        await wait_until(pilot, lambda: gated.snapshots >= 4)  # the timer keeps re-arming after each poll
        assert gated.most == 1
        assert app.view_state.snapshot is not None


async def test_slash_filter_narrows_the_failed_list_on_the_server(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert len(shown_job_ids(app)) == 50
        await pilot.press("slash", *"ValueError", "enter")
        await settle(pilot)
        screen = failed_screen(app)
        rows = [screen.by_key[k] for k in screen.table.row_keys]
        assert len(rows) == 30 and {r.error_class for r in rows} == {"ValueError"}
        assert (50, None, "ValueError") in engine.called("failed_jobs")
        await pilot.press("escape")
        await settle(pilot)
        assert screen.needle == "" and len(shown_job_ids(app)) == 50


async def test_slash_filter_is_local_on_other_tables(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"batch", "enter")
        await pilot.pause()
        assert app.screen.query_one("#workers", KeyedTable).row_keys == ["w-batch-1", "w-batch-2"]
        assert app.screen.query_one("#lanes", KeyedTable).row_keys == []


async def test_scrolling_to_the_end_loads_the_next_page_by_keyset(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert engine.called("failed_jobs") == []  # the first page came with the snapshot
        await pilot.press("end")
        await settle(pilot)
        screen = failed_screen(app)
        assert len(screen.pages.rows) == 100
        first = engine.called("failed_jobs")[0]
        last_of_page_one = engine.failures[49]
        assert first == (50, (last_of_page_one.failed_at, last_of_page_one.id), None)
        await pilot.press("end")
        await settle(pilot)
        assert len(screen.pages.rows) == 120 and screen.pages.exhausted
        assert all(limit == 50 for limit, _, _ in engine.called("failed_jobs"))
        await pilot.press("end")
        await settle(pilot)
        assert len(engine.called("failed_jobs")) == 2  # nothing left: no further query


async def test_refresh_updates_rows_in_place_and_keeps_the_cursor_key(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "down", "down", "down", "down")
        screen = failed_screen(app)
        key = screen.table.cursor_key
        refills: list[int] = []
        original = screen.table._refill
        screen.table._refill = lambda rows: (refills.append(1), original(rows))[1]  # type: ignore[method-assign]
        app.poll_now()
        await settle(pilot)
        assert refills == [] and screen.table.cursor_key == key
        engine.retry(engine.failures[0].job_id)  # somebody else retried the newest failure
        app.poll_now()
        await settle(pilot)
        assert screen.table.cursor_key == key and screen.table.cursor_row == 4


async def test_stuck_screen_stops_the_highlighted_job(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#stuck-table", KeyedTable)
        assert table.row_keys == engine.stuck_ids
        await pilot.press("c")
        await settle(pilot)
        assert engine.called("cancel") == [(engine.stuck_ids[0],)]
        assert table.row_keys == [engine.stuck_ids[1]]
        assert any("Stopped" in m for _, m, _ in notifications(app))


async def test_refused_or_failing_actions_notify_and_never_crash(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        target = shown_job_ids(app)[0]
        engine.refuse.add(target)
        await pilot.press("r")
        await settle(pilot)
        assert ("Retry refused", f"job {target[:8]} is locked by another operator", "warning") in notifications(app)
        assert target in shown_job_ids(app)

        def down(job_id: str) -> bool:
            raise UnavailableError("Redis unreachable")

        engine.retry = down  # type: ignore[method-assign]
        await pilot.press("r")
        await settle(pilot)
        assert ("Retry failed", "Redis unreachable", "error") in notifications(app)
        assert app.is_running


async def test_lookup_by_prefix_shows_the_detail_and_explains_misses(engine: FakeEngine, make_app: AppFactory) -> None:
    target = engine.failures[3]
    ids = [f.job_id for f in engine.failures] + engine.stuck_ids + engine.scheduled_ids
    prefix = next(target.job_id[:n] for n in range(1, 12) if sum(i.startswith(target.job_id[:n]) for i in ids) == 1)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j", *"zzz", "enter")
        await settle(pilot)
        message = app.screen.query_one("#lookup-message", Static)
        assert "No job matches 'zzz'" in text_of(message)
        await pilot.press(*["backspace"] * 3, "1", "enter")
        await settle(pilot)
        assert "matches" in text_of(message) and "type more" in text_of(message)
        await pilot.press("backspace", *prefix, "enter")
        await settle(pilot)
        assert app.current_mode == "job"
        body = text_of(app.screen.query_one("#detail-body", Static))
        assert target.job_id in body and "Traceback" in body and target.error_message in body
        assert "2025-03-14" in body  # absolute times in the detail


async def test_highlight_shows_the_detail_pane_with_retry_strategy(engine: FakeEngine, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        body = text_of(app.screen.query_one("#detail-body", Static))
        newest = engine.failures[0]
        assert newest.job_id in body and "strategy exponential" in body and "next delay" in body
        await pilot.press("down")
        await settle(pilot)
        body = text_of(app.screen.query_one("#detail-body", Static))
        assert engine.failures[1].job_id in body


async def test_screens_switch_by_number_and_tab(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        seen = [app.current_mode]
        for _ in range(5):
            await pilot.press("tab")
            seen.append(app.current_mode)
        assert seen == ["dashboard", "failed", "stuck", "job", "alerts", "dashboard"]
        await pilot.press("3")
        assert app.current_mode == "stuck"
        assert isinstance(app.screen, BaseScreen) and app.screen.MODE == "stuck"


async def test_palette_and_help_come_from_the_same_registry(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        titles = [title async for title in _palette_titles(app)]
        assert {"Retry", "Retry all", "Mark", "Group", "Filter", "Find", "Pause", "Go to Stuck"} <= set(titles)
        assert "Resume" not in titles and "Cancel" not in titles  # paused=False; cancel is not a failed-screen key
        await pilot.press("question_mark")
        help_text = text_of(app.screen.query_one("#help-body", Static))
        for words in ("Retry all", "Mark", "Group", "Find", "Quit", "Cancel marked"):
            assert words in help_text
        await pilot.press("escape")
        assert isinstance(app.screen, FailedScreen)


async def _palette_titles(app: JobTUI) -> AsyncIterator[str]:
    provider = JobCommands(app.screen_stack[0])
    async for hit in provider.discover():
        yield str(hit.display)


async def test_recovers_by_itself_when_the_engine_comes_back(make_app: AppFactory) -> None:
    flaky = FakeEngine()
    flaky.outage = True
    app = make_app(refresh=0.05, fake=flaky)
    async with app.run_test(size=(120, 40)) as pilot:
        banner = app.screen.query_one(Banner)
        await wait_until(pilot, lambda: banner.has_class("-down") and flaky.snapshots >= 2)  # it keeps retrying
        flaky.outage = False
        await wait_until(pilot, lambda: not banner.has_class("-down"))
        assert app.screen.query_one("#lanes", KeyedTable).row_count == 4


async def test_every_screen_fits_80x24_without_horizontal_scrolling(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key in ("1", "2", "3", "2", "g"):
            await pilot.press(key)
            await settle(pilot)
            for table in app.screen.query(KeyedTable):
                assert table.row_count > 0, table.id
                assert table.virtual_size.width <= table.scrollable_content_region.width, table.id
        assert failed_screen(app).table.column_keys == ["count", "error", "message", "first", "last"]
        await pilot.press("1")
        assert "scheduled" in app.screen.query_one("#lanes", KeyedTable).column_keys
        workers = app.screen.query_one("#workers", KeyedTable)
        assert set(workers.hidden_keys) <= {"host", "pid"}  # PID and host give way to the current job
        busy = [workers.get_row(key)[workers.column_keys.index("job")].plain for key in ("w-batch-1", "w-batch-2")]
        assert all(len(text.split()) == 5 for text in busy), busy  # ▲, id, type, time: '▲ 170d7fcf repo…csv 2h 15m'

