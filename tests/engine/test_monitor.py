"""The queue monitor: per-queue stats, threshold crossings logged once, the shared snapshot."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from jobengine import Engine, JobSpec, Settings
from jobengine.store.postgres import PostgresStore
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES

T = TypeVar("T")


def test_queue_stats(fast_engine: Engine) -> None:
    fast_engine.set_limit("default", 10)
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(2)] + [JobSpec(jobs.broken)])
    fast_engine.worker().work(burst=True, logging_level="WARNING")  # two finish, one fails
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(4)])
    fast_engine.dispatch(jobs.noop, priority="low")
    stats = {q.name: q for q in fast_engine.monitor.queue_stats()}
    default = stats["default"]
    assert (default.size, default.scheduled, default.running, default.failed) == (4, 0, 0, 1)
    assert default.oldest_wait is not None and default.oldest_wait >= 0
    assert (default.rate_limit, default.rate_used) == (10, 3)
    assert sum(default.processed_per_minute) == 2 and sum(default.failed_per_minute) == 1
    assert (stats["low"].size, stats["low"].rate_limit, stats["low"].oldest_wait is not None) == (1, None, True)
    assert stats["critical"].oldest_wait is None


@pytest.fixture
def two_monitors(redis_url: str, database_url: str) -> Iterator[tuple[Engine, Engine]]:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                             lanes=dict(ZERO_DELAY_LANES), queue_size={"default": 2})
    first, second = Engine(settings), Engine(settings, migrate=False)
    yield first, second
    first.close()
    second.close()


def test_threshold_crossing_is_logged_once_per_crossing(two_monitors: tuple[Engine, Engine],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    first, second = two_monitors

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "jobengine.monitor"]

    with caplog.at_level(logging.INFO, logger="jobengine.monitor"):
        first.dispatch_many([JobSpec(jobs.noop) for _ in range(3)])
        for engine in (first, second, first, second):  # four ticks in two processes' worth of monitors
            assert next(q for q in engine.monitor.queue_stats() if q.name == "default").over_threshold
        assert warnings() == ["queue default holds 3 jobs, over its size threshold of 2"]
        first.worker().work(burst=True, logging_level="WARNING")
        second.monitor.queue_stats()
        first.monitor.queue_stats()
        assert warnings()[1:] == ["queue default is back under its size threshold of 2 (0 jobs)"]
        first.dispatch_many([JobSpec(jobs.noop) for _ in range(4)])
        second.monitor.queue_stats()
        first.monitor.queue_stats()
    assert warnings()[2:] == ["queue default holds 4 jobs, over its size threshold of 2"]
    assert [q.over_threshold for q in first.monitor.snapshot(shared=False).queues] == [False, False, True, False]


class CountingStore(PostgresStore):
    """The real store, counting the statements it runs (one transaction each)."""

    lock = threading.Lock()
    statements = 0

    def _run(self, name: str, work: Callable[[Any], T]) -> T:
        with CountingStore.lock:
            CountingStore.statements += 1
        return super()._run(name, work)


def test_ten_consoles_share_one_snapshot(redis_url: str, database_url: str) -> None:
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, refresh=30.0)
    consoles = [Engine(settings, migrate=(i == 0)) for i in range(10)]
    try:
        for engine in consoles:
            engine.store.close()
            engine.store = engine.monitor.store = CountingStore(database_url)
        consoles[0].monitor.snapshot(shared=False)
        one_snapshot, CountingStore.statements = CountingStore.statements, 0
        assert one_snapshot == 5  # failed page, failed total, stuck jobs, failures in the last hour, Redis epoch

        def poll_together() -> list[Any]:
            barrier = threading.Barrier(len(consoles))
            results: list[Any] = [None] * len(consoles)

            def poll(i: int) -> None:
                barrier.wait()
                results[i] = consoles[i].snapshot()

            threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(consoles))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            return results

        first = poll_together()
        assert CountingStore.statements == one_snapshot  # not ten times
        assert len({s.taken_at for s in first}) == 1  # the very same snapshot
        poll_together()
        assert CountingStore.statements == one_snapshot  # still within the interval
        consoles[3].cache.flush_tag("snapshot")  # what an operator's retry or cancel does
        second = poll_together()
        assert CountingStore.statements == 2 * one_snapshot
        assert len({s.taken_at for s in second}) == 1 and second[0].taken_at > first[0].taken_at
    finally:
        for engine in consoles:
            engine.close()
