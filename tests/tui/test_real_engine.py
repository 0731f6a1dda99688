"""The console driven through Pilot against the real engine: real Redis, real PostgreSQL.

Each test gets a clean Redis database and a fresh migrated PostgreSQL database (the
`redis_url` / `database_url` fixtures of tests/conftest.py); failures are made by running
`tests.engine.jobs.broken` through burst workers, then the history is flushed to PostgreSQL so
the failed list has rows. Nothing here is mocked.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from jobengine.errors import OperationRefused
from jobengine.types import JobStatus
from jobtui import JobTUI
from jobtui.screens.confirm import ConfirmScreen
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle
from tests.tui.conftest import QUIET, settle, shown_job_ids
from tests.tui.test_pilot import text_of

ZERO_DELAY_LANES = {"critical": ("critical", 0.0), "high": ("high", 0.0), "normal": ("default", 0.0),
                    "low": ("low", 0.0)}
ME = (getpass.getuser(), socket.gethostname())


@pytest.fixture
def live(redis_url: str, database_url: str) -> Iterator[Engine]:
    """An engine with lanes and retries without delays; the shared snapshot lives 0.1 s."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                             lanes=dict(ZERO_DELAY_LANES), refresh=0.1,
                             retry_params={"exponential": {"base": 0, "jitter": 0}, "linear": {"step": 0}})
    engine = Engine(settings)
    yield engine
    engine.close()


def make_failures(engine: Engine, n: int, priority: str = "high") -> list[str]:
    ids = [engine.dispatch(jobs.broken, i, priority=priority) for i in range(n)]
    run_until_idle(engine)
    engine.flush_history()
    return ids


def schedule(engine: Engine) -> str:
    """A job on the low lane that runs in 10 minutes."""
    [job_id] = engine.dispatch_many([JobSpec(jobs.noop, priority="low", delay=600)])
    engine.flush_history()
    return job_id


def audit(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT action, os_user, host FROM audit_log ORDER BY id")


async def refresh(app: JobTUI, pilot: Any) -> None:
    """A poll that cannot be served from the shared snapshot of before (it lives 0.1 s)."""
    await pilot.pause(0.15)
    app.poll_now()
    await settle(pilot)


def rq_state(conn: redis.Redis, job_ids: list[str]) -> dict[str, Any]:
    """Every job's RQ status and every queue and registry of every lane."""
    state: dict[str, Any] = {f"status:{j}": conn.hget(f"rq:job:{j}", "status") for j in job_ids}
    for q in ("critical", "high", "default", "low"):
        state[f"queue:{q}"] = conn.lrange(f"rq:queue:{q}", 0, -1)
        for registry in ("failed", "scheduled", "canceled", "wip"):
            state[f"{registry}:{q}"] = conn.zrange(f"rq:{registry}:{q}", 0, -1, withscores=True)
    return state


async def test_r_puts_a_failed_job_back_on_its_lane_and_off_the_failed_list(
    live: Engine, database_url: str
) -> None:
    failed = make_failures(live, 3)
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert sorted(shown_job_ids(app)) == sorted(failed)
        target = shown_job_ids(app)[0]
        await pilot.press("r")
        await settle(pilot)
        assert Queue("high", connection=live.connection).job_ids == [target]
        assert Job.fetch(target, connection=live.connection).get_status() == "queued"
        assert target not in live.connection.zrange("rq:failed:high", 0, -1)
        await refresh(app, pilot)
        assert sorted(shown_job_ids(app)) == sorted(j for j in failed if j != target)
        assert "Failed 2" in text_of(app.screen.query_one("#nav", Static))
    assert audit(database_url) == [("retry", *ME)]
    # Another console (or this one restarted) agrees, before any history writer has run: the
    # retry itself took the failure off the engine's failed list.
    fresh = JobTUI(live, refresh=QUIET)
    async with fresh.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert sorted(shown_job_ids(fresh)) == sorted(j for j in failed if j != target)
        assert "Failed 2" in text_of(fresh.screen.query_one("#nav", Static))
        assert "2 failures" in text_of(fresh.screen.query_one("#failed-status", Static))
    live.flush_history()
    assert rows(database_url, "SELECT status FROM jobs WHERE id=%s", target) == [("queued",)]
    detail = live.job_detail(target)  # its detail keeps the failure, marked retried
    assert detail is not None and detail.failure is not None and detail.failure.retried_at is not None
    again = JobTUI(live, refresh=QUIET)  # and after the `requeued` event has landed too
    async with again.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert sorted(shown_job_ids(again)) == sorted(j for j in failed if j != target)


async def test_c_on_a_scheduled_job_found_by_lookup_cancels_it(live: Engine, database_url: str) -> None:
    job_id = schedule(live)
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j", *job_id[:8], "enter")
        await settle(pilot)
        assert app.current_mode == "job"
        assert app.current_job is not None and app.current_job.record.id == job_id
        assert app.current_job.record.status is JobStatus.SCHEDULED
        await pilot.press("c")
        await settle(pilot)
        assert Job.fetch(job_id, connection=live.connection).get_status() == "canceled"
        assert live.connection.zcard("rq:scheduled:low") == 0
        live.flush_history()
        await refresh(app, pilot)
        assert app.current_job.record.status is JobStatus.CANCELED
        assert "CANCELED" in text_of(app.screen.query_one("#detail-body", Static))
    assert rows(database_url, "SELECT status FROM jobs WHERE id=%s", job_id) == [("canceled",)]
    assert audit(database_url) == [("cancel", *ME)]


async def test_read_only_refuses_retry_and_cancel_in_the_console_and_the_engine(
    live: Engine, database_url: str
) -> None:
    failed = make_failures(live, 2)
    scheduled = schedule(live)
    before = rq_state(live.connection, [*failed, scheduled])
    with Engine(replace(live.settings, read_only=True)) as engine:
        app = JobTUI(engine, read_only=True, refresh=QUIET)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            await settle(pilot)
            assert sorted(shown_job_ids(app)) == sorted(failed)
            keys = {key.key for key in app.screen.query_one(Footer).query(FooterKey)}
            assert not {"r", "R", "space"} & keys
            await pilot.press("r", "space", "R")
            await settle(pilot)
            assert not isinstance(app.screen, ConfirmScreen)
            assert sorted(shown_job_ids(app)) == sorted(failed)
            await pilot.press("j", *scheduled[:8], "enter")
            await settle(pilot)
            assert app.current_mode == "job" and app.current_job is not None
            assert "c" not in {key.key for key in app.screen.query_one(Footer).query(FooterKey)}
            await pilot.press("c", "r")
            await settle(pilot)
            assert app.current_job.record.status is JobStatus.SCHEDULED
        assert rq_state(live.connection, [*failed, scheduled]) == before
        with pytest.raises(OperationRefused, match="read-only"):
            engine.retry(failed[0])
        with pytest.raises(OperationRefused, match="read-only"):
            engine.cancel(scheduled)
        assert rq_state(live.connection, [*failed, scheduled]) == before
    assert live.connection.xlen("jobengine:events") == 0  # no history event was written either
    assert audit(database_url) == []


async def test_a_5mb_traceback_and_a_1mb_argument_reach_the_job_view_bounded(live: Engine) -> None:
    """The widget receives DETAIL_TEXT characters of each long text; `m` asks for eight times more.

    (Arguments are stored as a short repr at dispatch; a 1 MB argument reaches the view through
    the error message and traceback of the job it broke.)"""
    from jobtui.messages import DETAIL_TEXT

    job_id = live.dispatch(jobs.raise_message, "huge", type="huge", priority="high")
    [arg_id] = live.dispatch_many([JobSpec(jobs.broken, ("a" * 1_000_000,), type="big-arg", priority="high")])
    run_until_idle(live)
    live.flush_history()
    full = live.job_detail(job_id)
    # the worker keeps the first and last of a 5 MB traceback (100,000 characters): still far over the view's bound
    assert full is not None and full.failure is not None and len(full.failure.traceback or "") > 4 * DETAIL_TEXT
    app = JobTUI(live, refresh=QUIET)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for wanted, limit in ((arg_id, DETAIL_TEXT), (job_id, DETAIL_TEXT)):
            await pilot.press("j", *wanted[:8], "enter")
            await settle(pilot)
            shown = app.current_job
            assert shown is not None and shown.record.id == wanted and shown.truncated
            texts = [shown.record.args or ""]
            if shown.failure is not None:
                texts += [shown.failure.error_message or "", shown.failure.traceback or ""]
            assert max(len(t) for t in texts) < limit + 200  # the cut text and its marker
            assert "m loads more" in text_of(app.screen.query_one("#detail-body", Static))
        await pilot.press("m")
        await settle(pilot)
        await refresh(app, pilot)
        shown = app.current_job  # eight times more: the whole (worker-kept) traceback now fits
        assert shown is not None and shown.failure is not None and not shown.truncated
        assert shown.failure.traceback == full.failure.traceback
