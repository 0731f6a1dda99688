"""Fixtures for the console tests: a FakeEngine, an app factory and a helper to let polls land.

`async def` tests run on a fresh event loop each (`asyncio.run`), so these tests need no
asyncio plugin for pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from typing import TypeVar

import pytest
from textual.pilot import Pilot
from textual.worker import DeadlockError, WorkerCancelled, WorkerFailed

from jobengine.models import FailedJob
from jobtui import JobTUI
from jobtui.screens.failed import FailedScreen
from tests.tui.doubles import NOW, FakeEngine

S = TypeVar("S")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run coroutine tests with asyncio.run."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


QUIET = 3600.0
"""A refresh interval long enough that only the first poll and explicit refreshes happen."""


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_app(engine: FakeEngine) -> Callable[..., JobTUI]:
    def make(*, refresh: float = QUIET, read_only: bool = False, fake: FakeEngine | None = None) -> JobTUI:
        return JobTUI(fake or engine, refresh=refresh, read_only=read_only, clock=lambda: NOW)

    return make


async def wait_until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Pause until `condition()` holds (timing-based tests stay robust on a slow machine)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


async def settle(pilot: Pilot[None], rounds: int = 3) -> None:
    """Let workers finish and their messages (and the refreshes they trigger) land."""
    for _ in range(rounds):
        # a failing poll is an outage the test wants to see; a superseded (cancelled) poll is normal;
        # a wait from inside a worker's own task is a deadlock Textual refuses: pause instead
        with contextlib.suppress(WorkerFailed, WorkerCancelled, DeadlockError):
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def base_screen(app: JobTUI, kind: type[S]) -> S:
    """The screen under any modals, checked to be a `kind`."""
    screen = app.screen_stack[0]
    assert isinstance(screen, kind)
    return screen


def failed_screen(app: JobTUI) -> FailedScreen:
    return base_screen(app, FailedScreen)


def shown_failures(app: JobTUI) -> list[FailedJob]:
    """The failed list's rows, top to bottom."""
    screen = failed_screen(app)
    return [screen.by_key[key] for key in screen.table.row_keys]


def shown_job_ids(app: JobTUI) -> list[str]:
    return [row.job_id for row in shown_failures(app)]
