"""The tagged cache: remember, flush by tag, no stale value after an invalidation, job status."""

from __future__ import annotations

import redis
from rq.job import Job

from jobengine import Engine
from jobengine.cache import TaggedCache
from jobengine.keys import cache_key, cache_tag_key, job_status_cache_name
from tests.engine import jobs
from tests.engine.helpers import run_until_idle


def test_remember_computes_once_and_flush_tag_forgets(redis_conn: redis.Redis) -> None:
    cache = TaggedCache(redis_conn)
    calls: list[str] = []

    def compute(name: str) -> dict[str, int]:
        calls.append(name)
        return {"value": len(calls)}

    assert cache.remember("a", 300, lambda: compute("a"), tags=["stats"]) == {"value": 1}
    assert cache.remember("a", 300, lambda: compute("a"), tags=["stats"]) == {"value": 1}
    assert cache.remember("b", 60, lambda: compute("b"), tags=["config"]) == {"value": 2}
    assert calls == ["a", "b"]
    assert 0 < redis_conn.pttl(cache_key("a")) <= 300_000
    assert redis_conn.ttl(cache_tag_key("stats")) >= 300  # a tag outlives its entries
    assert cache.flush_tag("stats") == 1
    assert cache.remember("a", 300, lambda: compute("a"), tags=["stats"]) == {"value": 3}
    assert cache.remember("b", 60, lambda: compute("b"), tags=["config"]) == {"value": 2}  # other tag kept


def test_json_values(redis_conn: redis.Redis) -> None:
    cache = TaggedCache(redis_conn, serializer="json")
    assert cache.remember("j", 10, lambda: {"n": [1, 2]}) == {"n": [1, 2]}
    assert redis_conn.get(cache_key("j")) == b'J{"n":[1,2]}'


def test_value_read_before_an_invalidation_is_not_cached(redis_conn: redis.Redis) -> None:
    """A transition lands while the value is computed (the worker's DEL in its pipeline)."""
    cache = TaggedCache(redis_conn)

    def read_then_transition() -> str:
        value = "queued"  # read before the transition...
        redis_conn.delete(cache_key("job_status:x"))  # ...which invalidates the entry
        return value

    assert cache.remember("job_status:x", 300, read_then_transition, tags=["jobs"]) == "queued"
    assert redis_conn.get(cache_key("job_status:x")) is None or \
        redis_conn.get(cache_key("job_status:x")).startswith(b"\x00pending")
    assert cache.remember("job_status:x", 300, lambda: "finished", tags=["jobs"]) == "finished"
    assert cache.get("job_status:x") == "finished"


def test_flush_tag_while_computing_wins(redis_conn: redis.Redis) -> None:
    cache = TaggedCache(redis_conn)

    def read_then_flush() -> int:
        cache.flush_tag("stats")
        return 1

    cache.remember("stats:x", 300, read_then_flush, tags=["stats"])
    assert cache.get("stats:x") is None


def test_shared_value_computed_across_a_flush_is_computed_again(redis_conn: redis.Redis) -> None:
    """A retry lands (and flushes the snapshot) while another process computes the snapshot."""
    cache = TaggedCache(redis_conn)
    state = {"failed": 3}
    reads: list[int] = []

    def snapshot() -> int:
        reads.append(state["failed"])  # read before the retry...
        if len(reads) == 1:
            state["failed"] = 2  # ...which lands now
            cache.flush_tag("snapshot")
        return reads[-1]

    assert cache.shared("snap", 10, snapshot, tags=["snapshot"]) == 2
    assert reads == [3, 2] and cache.get("snap") == 2 and cache.get("snap:stale") == 2
    assert cache.shared("snap", 10, snapshot, tags=["snapshot"]) == 2 and reads == [3, 2]  # stored

def test_trim_drops_members_of_expired_entries(redis_conn: redis.Redis) -> None:
    cache = TaggedCache(redis_conn)
    for i in range(5):
        cache.remember(f"e{i}", 300, lambda: 1, tags=["jobs"])
    redis_conn.delete(cache_key("e1"), cache_key("e3"))
    assert cache.trim_tag(cache_tag_key("jobs")) == 2
    assert redis_conn.scard(cache_tag_key("jobs")) == 3


def test_job_status_is_invalidated_by_retry_and_cancel(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    key = cache_key(job_status_cache_name("x"))
    failed = fast_engine.dispatch(jobs.broken, priority="critical")
    run_until_idle(fast_engine)
    assert fast_engine.job_status(failed) == "failed"
    assert conn.exists(key.replace("x", failed))  # cached (300 s by default)
    assert 0 < conn.ttl(key.replace("x", failed)) <= fast_engine.settings.cache_job_status

    assert fast_engine.retry(failed) is True
    assert not conn.exists(key.replace("x", failed))
    assert fast_engine.job_status(failed) == "queued"

    assert fast_engine.cancel(failed) is True
    assert fast_engine.job_status(failed) == "canceled"
    assert fast_engine.job_detail(failed).rq_status == "canceled"


def test_worker_transitions_drop_the_cached_status(fast_engine: Engine) -> None:
    job_id = fast_engine.dispatch(jobs.add, 1, 2, priority="critical")
    assert fast_engine.job_status(job_id) == "queued"
    fast_engine.worker().work(burst=True, logging_level="WARNING")
    assert fast_engine.job_status(job_id) == "finished"
    assert Job.fetch(job_id, connection=fast_engine.connection).return_value() == 3


def test_unknown_job_status_is_not_cached(engine: Engine) -> None:
    assert engine.job_status("no-such-job") is None
    assert not engine.connection.exists(cache_key(job_status_cache_name("no-such-job")))


def test_status_of_an_expired_rq_job_comes_from_history(fast_engine: Engine) -> None:
    job_id = fast_engine.dispatch(jobs.noop, priority="critical")
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    fast_engine.connection.delete(f"rq:job:{job_id}", cache_key(job_status_cache_name(job_id)))
    assert fast_engine.job_status(job_id) == "finished"
