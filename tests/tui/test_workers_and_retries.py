"""Stale workers on the dashboard, and retried failures leaving the failed list."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta

from rich.text import Text

from jobengine.models import FailedJob, Snapshot, WorkerInfo
from jobengine.types import JobStatus
from jobtui import JobTUI
from jobtui.messages import ViewState
from jobtui.screens.confirm import ConfirmScreen
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Cell, KeyedTable
from jobtui.widgets.workers import COLUMNS as WIDE
from jobtui.widgets.workers import STALE_AFTER, is_stale, worker_rows
from tests.tui.conftest import failed_screen, settle, shown_failures, wait_until
from tests.tui.doubles import NOW, FakeEngine

AppFactory = Callable[..., JobTUI]
COLORS = Palette(error="#ff0000", warning="#ffaa00", success="#00ff00", accent="#ffff00", muted="#777777",
                 primary="#0000ff")
STATE = [c.key for c in WIDE].index("state")


def worker(state: str, seconds_ago: float | None) -> WorkerInfo:
    beat = NOW - timedelta(seconds=seconds_ago) if seconds_ago is not None else None
    return WorkerInfo("w", "h", 1, state, None, ("default",), beat)


def test_a_worker_is_stale_after_a_minute_without_heartbeat_unless_busy() -> None:
    assert STALE_AFTER == 60
    assert not is_stale(worker("idle", 59), NOW)
    assert is_stale(worker("idle", 61), NOW)
    assert is_stale(worker("suspended", 600), NOW)
    assert is_stale(worker("idle", None), NOW)
    # an in-process worker cannot heartbeat while its job runs: age alone does not make it stale
    assert not is_stale(worker("busy", 600), NOW)


def drawn(cells: Sequence[Cell], width: int = 40) -> list[Text]:
    """Cells as shown: a Fill drawn for `width` cells."""
    return [cell if isinstance(cell, Text) else cell(width) for cell in cells]


def test_stale_rows_are_dimmed_and_say_stale() -> None:
    (_, fresh), (_, dead) = worker_rows([worker("idle", 10), worker("idle", 180)], NOW, COLORS, narrow=False)
    fresh, dead = drawn(fresh), drawn(dead)
    assert fresh[STATE].plain == "idle" and dead[STATE].plain == "stale"
    assert all(COLORS.muted in str(cell.style) for i, cell in enumerate(dead) if WIDE[i].key != "beat")
    assert not any(COLORS.muted in str(cell.style) for i, cell in enumerate(fresh) if WIDE[i].key != "state")
    beat = dead[[c.key for c in WIDE].index("beat")]
    assert beat.plain == "3m ago" and COLORS.warning in str(beat.style)


async def test_dashboard_shows_a_sigkilled_worker_as_stale(make_app: AppFactory) -> None:
    app = make_app(fake=FakeEngine(dead_worker=True))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workers", KeyedTable)
        states = {key: table.get_row(key)[STATE].plain for key in table.row_keys}
        assert states == {"w-api-1": "idle", "w-batch-1": "busy", "w-batch-2": "busy", "w-api-2": "stale"}
        assert app.screen.query_one("#workers-box").border_subtitle == "2/4 busy · 1 stale"
        await pilot.press("slash", *"stale", "enter")
        await pilot.pause()
        assert table.row_keys == ["w-api-2"]


async def test_without_a_dead_worker_nothing_is_stale(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workers", KeyedTable)
        assert "stale" not in {table.get_row(key)[STATE].plain for key in table.row_keys}
        assert app.screen.query_one("#workers-box").border_subtitle == "2/3 busy"


# ---- retried failures -------------------------------------------------------------------------
# The engine takes a retried failure off its failed list (failed_jobs.retried_at); the console
# shows what the engine returns, drops the retried rows at once and ignores reads that started
# before the retry.

class FailsAgain(FakeEngine):
    """Like the real engine: a retried failure leaves the list; the job can fail again. A
    snapshot can be held after it has read (`hold_next`): a poll in flight across a retry."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_next = False
        self.held = threading.Event()
        self.release = threading.Event()

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        if self.hold_next:
            self.hold_next = False
            self.held.set()
            self.release.wait(5)
        return snap

    def fail_again(self, job_id: str) -> FailedJob:
        with self._lock:
            row = self._failure_of[job_id]
            again = replace(row, id=9999, failed_at=NOW, error_message="failed again")
            self._failures.insert(0, again)
            self._jobs[job_id] = replace(self._jobs[job_id], status=JobStatus.FAILED)
            return again


def recorded_states(app: JobTUI) -> list[ViewState]:
    """Every state the app renders from now on."""
    states: list[ViewState] = []
    render = app._set_state

    def record(state: ViewState) -> None:
        states.append(state)
        render(state)

    app._set_state = record  # type: ignore[method-assign]
    return states


async def test_a_retried_job_leaves_the_list_until_it_fails_again(make_app: AppFactory) -> None:
    engine = FailsAgain()
    app = make_app(fake=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        target = shown_failures(app)[0].job_id
        await pilot.press("r")
        await settle(pilot)
        assert engine.called("retry") == [(target,)]
        assert target not in {r.job_id for r in shown_failures(app)}
        assert "119 failures" in str(app.screen.query_one("#failed-status").render())
        again = engine.fail_again(target)
        app.poll_now()
        await settle(pilot)
        assert shown_failures(app)[0] == again


async def test_a_poll_that_read_before_a_retry_does_not_bring_the_row_back(make_app: AppFactory) -> None:
    engine = FailsAgain()
    app = make_app(fake=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        target = shown_failures(app)[0].job_id
        engine.hold_next = True
        app.poll_now()  # reads the list with the target in it, then waits
        await wait_until(pilot, engine.held.is_set)
        states = recorded_states(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: target not in {r.job_id for r in shown_failures(app)})
        engine.release.set()  # the poll of before lands after the retry
        await settle(pilot)
        assert states, "the poll after the retry landed"
        assert all(target not in {r.job_id for r in state.snapshot.failed} for state in states if state.snapshot)
        assert target not in {r.job_id for r in shown_failures(app)}
        assert "119 failures" in str(app.screen.query_one("#failed-status").render())


async def test_a_retried_group_leaves_both_views(make_app: AppFactory) -> None:
    engine = FailsAgain()
    app = make_app(fake=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "g")
        await settle(pilot)
        screen = failed_screen(app)
        top = screen.shown_groups()[0]
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert engine.called("retry_group") == [(top.fingerprint,)]
        assert top.fingerprint not in {g.fingerprint for g in engine.failure_groups()}
        assert top.fingerprint not in screen.table.row_keys
        await pilot.press("g")
        await settle(pilot)
        assert top.fingerprint not in {r.fingerprint for r in shown_failures(app)}
        assert len(shown_failures(app)) == 50
