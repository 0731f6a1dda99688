"""Lanes, pause and bulk by filter driven through Pilot against the real engine (real Redis, real
PostgreSQL, a real `jobtui worker` process): P pauses a lane and the worker stops taking from it
within a second and starts again on resume; R on a typed filter retries all N failures with one
audit row; the lane view cancels a queued job and runs a scheduled one now."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.text import Text

from jobengine import Engine, JobSpec
from jobtui import JobTUI
from jobtui.screens.bulk import BulkScreen
from jobtui.screens.confirm import ConfirmScreen
from jobtui.screens.lane import LaneScreen
from jobtui.widgets.lanes import LanesTable
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle
from tests.tui.conftest import QUIET, settle, wait_until
from tests.tui.test_real_engine import live, refresh  # noqa: F401 - the engine fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(redis_url: str, database_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A fast worker process on the default and low lanes (its own main thread: signals)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                             database_url, "worker", "--queues", "default,low"], env=env, cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def lane_cell(app: JobTUI, queue: str, column: str) -> str:
    table = app.screen.query_one(LanesTable)
    cell = table.get_cell(queue, column)
    return cell.plain if isinstance(cell, Text) else str(cell)


async def wait_for(pilot: object, condition: object, timeout: float) -> float:
    start = time.monotonic()
    await wait_until(pilot, condition, timeout)  # type: ignore[arg-type]
    return time.monotonic() - start


async def test_p_on_a_lane_pauses_it_on_a_running_worker_and_p_again_resumes(
        live: Engine, worker: subprocess.Popen[bytes], database_url: str) -> None:  # noqa: F811
    warm = live.dispatch(jobs.noop, priority="low")
    deadline = time.monotonic() + 60
    while live.job_status(warm) != "finished":
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.05)
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down")  # the low lane
        assert app.screen.query_one(LanesTable).cursor_key == "low"
        await pilot.press("P")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Pause lane low?"
        await pilot.press("y")
        await settle(pilot)
        assert "low" in live.paused_queues()
        await refresh(app, pilot)
        assert lane_cell(app, "low", "state").startswith("paused ") and "@" in lane_cell(app, "low", "state")

        time.sleep(1.1)  # the worker has seen the pause by now
        held = [live.dispatch(jobs.noop, priority="low") for _ in range(3)]
        other = live.dispatch(jobs.noop, priority="normal")
        await wait_for(pilot, lambda: live.job_status(other) == "finished", 10)
        await pilot.pause(1.0)
        assert live.connection.llen("rq:queue:low") == 3 and {live.job_status(j) for j in held} == {"queued"}

        await pilot.press("P")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Resume lane low?"
        await pilot.press("y")
        await settle(pilot)
        drained = await wait_for(pilot, lambda: live.connection.llen("rq:queue:low") == 0, 10)
        assert drained < 2.0
        await refresh(app, pilot)
        assert "state" not in app.screen.query_one(LanesTable).column_keys  # no lane paused: no State column
    assert [a for (a,) in rows(database_url, "SELECT action FROM audit_log ORDER BY id")] == ["pause", "resume"]


async def test_retry_all_matching_a_typed_filter_shows_the_count_retries_all_and_audits_once(
        live: Engine, database_url: str) -> None:  # noqa: F811
    emails = live.dispatch_many([JobSpec(jobs.broken, (i,), type="email", priority="high") for i in range(5)])
    others = live.dispatch_many([JobSpec(jobs.broken, (i,), type="sms", priority="high") for i in range(2)])
    run_until_idle(live)
    live.flush_history()
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("slash", *"type:email", "enter")
        await settle(pilot)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, BulkScreen) and app.screen.phase == "ask")
        dialog = app.screen
        assert isinstance(dialog, BulkScreen)
        assert "Retry all 5 matching failures?" in str(dialog.query_one("#bulk-question").render())
        await pilot.press("y")
        await wait_until(pilot, lambda: not isinstance(app.screen, BulkScreen), 20)
        await settle(pilot)
    assert sorted(live.connection.lrange("rq:queue:high", 0, -1)) == sorted(j.encode() for j in emails)
    assert live.count_filtered("retry", "type:email") == 0
    assert live.count_filtered("retry", "type:sms") == len(others)
    assert rows(database_url, "SELECT action, job_id, detail FROM audit_log ORDER BY id") == [
        ("retry_filtered", None, "filter 'type:email': 5 of 5 job(s) retried")]


async def test_the_lane_view_cancels_a_queued_job_and_runs_a_scheduled_one_now(
        live: Engine, database_url: str) -> None:  # noqa: F811
    queued = live.dispatch_many([JobSpec(jobs.noop, type="mail", priority="low") for _ in range(2)])
    later = live.dispatch_many([JobSpec(jobs.noop, type="digest", priority="low", delay=600 + i) for i in range(2)])
    live.flush_history()
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down", "enter")
        await settle(pilot)
        lane = app.screen
        assert isinstance(lane, LaneScreen) and lane.queue == "low" and lane.section == "queued"
        assert lane.table.row_keys == queued
        assert [j.type for j in lane.rows] == ["mail", "mail"]
        await pilot.press("c")
        await settle(pilot)
        assert live.job_status(queued[0]) == "canceled"
        assert live.connection.lrange("rq:queue:low", 0, -1) == [queued[1].encode()]
        await wait_until(pilot, lambda: lane.table.row_keys == [queued[1]])

        await pilot.press("s")
        await settle(pilot)
        assert lane.section == "scheduled" and lane.table.row_keys == later
        await pilot.press("down")
        await settle(pilot)
        assert lane.table.get_cell(later[1], "in").plain in ("in 9m", "in 10m")  # due in 601 s
        await pilot.press("n")
        await settle(pilot)
        assert live.connection.lrange("rq:queue:low", 0, -1) == [later[1].encode(), queued[1].encode()]
        await wait_until(pilot, lambda: lane.table.row_keys == [later[0]])
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, LaneScreen)
    assert rows(database_url, "SELECT action, job_id FROM audit_log ORDER BY id") == [
        ("cancel", queued[0]), ("run_now", later[1])]
