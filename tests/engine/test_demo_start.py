"""`jobtui demo` starts on empty lanes: an earlier demo's leftovers go, other data stays."""

from __future__ import annotations

from jobengine import Engine
from jobtui.cli.demo import DEMO_MARK, fresh_start
from tests.engine import jobs
from tests.engine.helpers import run_until_idle, scalar


def _leftovers(engine: Engine) -> None:
    engine.dispatch(jobs.broken, priority="high")
    run_until_idle(engine)  # one failure in the history
    engine.dispatch(jobs.noop, priority="low")  # and one job left waiting
    engine.flush_history()


def test_an_earlier_demos_leftovers_are_cleared(fast_engine: Engine, database_url: str) -> None:
    assert fresh_start(fast_engine, users=1)  # empty servers: a clean start, marked as the demo's
    _leftovers(fast_engine)
    assert fast_engine.store.failed_total() == 1
    assert fresh_start(fast_engine, users=1)
    conn = fast_engine.connection
    assert conn.llen("rq:queue:low") == 0 and conn.exists(DEMO_MARK)
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 0
    assert fast_engine.store.failed_total() == 0 and fast_engine.failed_jobs() == []
    assert not fast_engine.monitor.redis_reset()  # what the demo cleared is no reset to reconcile


def test_a_demo_after_redis_lost_its_data_starts_healthy(fast_engine: Engine) -> None:
    assert fresh_start(fast_engine, users=1)
    fast_engine.worker()  # the epoch is recorded, as when the demo's workers start
    fast_engine.connection.flushdb()  # the embedded Redis restarted without its data
    fast_engine.connection.set(DEMO_MARK, "1")
    assert fast_engine.monitor.redis_reset()
    assert fresh_start(fast_engine, users=1)
    assert not fast_engine.monitor.redis_reset() and fast_engine.health().verdict != "failing"


def test_data_no_demo_made_is_kept(fast_engine: Engine, database_url: str) -> None:
    _leftovers(fast_engine)
    assert not fresh_start(fast_engine, users=1)
    assert fast_engine.connection.llen("rq:queue:low") == 1
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 2


def test_nothing_is_cleared_while_another_process_uses_the_servers(fast_engine: Engine) -> None:
    assert fresh_start(fast_engine, users=1)
    _leftovers(fast_engine)
    assert not fresh_start(fast_engine, users=2)
    assert fast_engine.connection.llen("rq:queue:low") == 1
