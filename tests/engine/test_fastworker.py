"""FastWorker internals: coalescing, the rate-limit gate hook, batches, held jobs, scheduling,
heartbeats, round trips. Real Redis and PostgreSQL; job functions are defined here."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue, get_current_job
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from jobengine import Engine, JobSpec
from jobengine.runtime.bookkeeping import Recorder, record
from jobengine.runtime.fastworker import FastWorker
from jobengine.runtime.transport import pack, transact
from jobengine.types import EventKind
from tests.engine import jobs
from tests.engine.helpers import rows, scalar

# ---- job functions ---------------------------------------------------------------------------------


def peek(seconds: float, other: str) -> None:
    """Sleep, then note what the rest of the queue looks like while this job still runs."""
    job = get_current_job()
    assert job is not None
    time.sleep(seconds)
    conn = job.connection
    conn.hset("peek", mapping={"queued": conn.llen(f"rq:queue:{job.origin}"),
                               "started": conn.zcard(f"rq:wip:{job.origin}"),
                               "other": conn.hget(f"rq:job:{other}", "status") or b"?"})


def beats(seconds: float) -> None:
    """Note the worker's heartbeat before and after sleeping."""
    job = get_current_job()
    assert job is not None
    key = f"rq:worker:{job.worker_name}"
    before = job.connection.hget(key, "last_heartbeat")
    time.sleep(seconds)
    job.connection.hset("beats", mapping={"before": before or b"", "after": job.connection.hget(key, "last_heartbeat")
                                          or b""})


def note(name: str) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.rpush("order", name)


def worker_for(engine: Engine, **attrs: Any) -> FastWorker:
    worker = engine.worker()
    assert isinstance(worker, FastWorker)
    for name, value in attrs.items():
        setattr(worker, name, value)
    return worker


def statuses(conn: redis.Redis, ids: list[str]) -> list[str]:
    return [Job.fetch(j, connection=conn).get_status().value for j in ids]


# ---- the recorder and the block transport ---------------------------------------------------------

def test_recorder_merges_what_many_jobs_write_to_the_same_keys(redis_conn: redis.Redis) -> None:
    one = Recorder()
    record(one, EventKind.FINISHED, "job-0", "default", type="noop", duration="0.001", attempt=1, worker="w")
    recorder = Recorder()
    for i in range(10):
        record(recorder, EventKind.FINISHED, f"job-{i}", "default", type="noop", duration="0.001", attempt=1,
               worker="w")
        recorder.hincrby("rq:worker:w", "successful_job_count", 1)
    merged = recorder.commands()
    # history events one by one, in order; counters, expiries and deletions once
    assert [args[5:7] for args in merged if args[0] == "XADD"] == [("j", f"job-{i}") for i in range(10)]
    assert len(merged) == len(one.commands()) - 1 + 10 + 1  # ten events, one more counter, the rest once
    transact(redis_conn, merged)
    assert redis_conn.xlen("jobengine:events") == 10
    assert list(redis_conn.hgetall("jobengine:metrics:processed").values()) == [b"10"]
    assert redis_conn.hget("rq:worker:w", "successful_job_count") == b"10"


_KEYS = ["k1", "k2", "k3"]
_ttl = st.sampled_from([None, 100, 200])  # record() sets a counter's expiry right after incrementing it
_writes = st.one_of(
    st.tuples(st.just("hincrby"), st.sampled_from(_KEYS), st.sampled_from(["f", "g"]), st.integers(-5, 5), _ttl),
    st.tuples(st.just("hincrbyfloat"), st.sampled_from(_KEYS), st.just("s"), st.sampled_from([0.25, 1.5]), _ttl),
    st.tuples(st.just("incr"), st.sampled_from(_KEYS), st.integers(0, 9), _ttl),
    st.tuples(st.just("delete"), st.sampled_from(_KEYS), st.none()),
)
_KIND = {"hincrby": "hash", "hincrbyfloat": "hash", "incr": "string", "delete": "deleted"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_writes, max_size=14))
def test_recorded_block_leaves_redis_as_the_writes_one_by_one(redis_conn: redis.Redis, writes: list[tuple]) -> None:
    """Same final state (values and whether a TTL is set) as a pipeline sending every write as
    it came, for the keys record() writes: hash or string counters, each given its expiry right
    after an increment, and deleted cache keys (a key is one of these, never two)."""
    kinds: dict[str, str] = {}
    writes = [w for w in writes if kinds.setdefault(w[1], _KIND[w[0]]) == _KIND[w[0]]]
    outcomes = []
    for variant in ("plain", "merged"):
        prefix = f"{variant}:{uuid.uuid4().hex}:"
        sink: Any = redis_conn.pipeline() if variant == "plain" else Recorder()
        for name, key, *rest, ttl in writes:
            getattr(sink, name)(prefix + key, *rest)
            if ttl is not None:
                sink.expire(prefix + key, ttl)
        if variant == "plain":
            sink.execute()
        else:
            transact(redis_conn, sink.commands())
        outcomes.append({k: _state(redis_conn, prefix + k) for k in _KEYS})
    assert outcomes[0] == outcomes[1]


def test_packed_commands_are_what_redis_py_sends(redis_conn: redis.Redis) -> None:
    commands = [("XADD", "s", "*", "k", "é ü", "n", 3, "f", 0.25, "b", b"\x00\xff"), ("SCRIPT LOAD", "return 1")]
    conn = redis_conn.connection_pool.get_connection()
    try:
        assert pack(commands, conn.encoder) == b"".join(conn.pack_commands(commands))
    finally:
        redis_conn.connection_pool.release(conn)


def _state(conn: redis.Redis, key: str) -> tuple[Any, ...]:
    kind = conn.type(key).decode()
    ttl = conn.ttl(key)
    value: Any = {"hash": conn.hgetall, "string": conn.get, "zset": lambda k: conn.zrange(k, 0, -1, withscores=True),
                  "list": lambda k: conn.lrange(k, 0, -1), "none": lambda k: None}[kind](key)
    if kind == "hash":
        value = {f: float(v) for f, v in value.items()}
    return kind, value, ttl > 0


# ---- the rate-limit gate hook --------------------------------------------------------------------------

def test_before_run_defers_without_an_attempt(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    job_id = fast_engine.dispatch(jobs.add, 1, 2)
    calls: list[str] = []

    def gate(job: Job) -> float | None:
        calls.append(job.id)
        return 30.0 if len(calls) == 1 else None

    worker = worker_for(fast_engine)
    worker.before_run = gate  # type: ignore[method-assign]
    before = time.time()
    worker.work(burst=True, logging_level="WARNING")
    job = Job.fetch(job_id, connection=conn)
    assert calls == [job_id]
    assert job.get_status() == "scheduled" and job.number_of_retries is None and job.meta["deferrals"] == 1
    assert job.started_at is None and job.worker_name is None
    registry = ScheduledJobRegistry("default", connection=conn)
    assert registry.get_job_ids() == [job_id]
    assert 29 <= registry.get_scheduled_time(job_id).timestamp() - before <= 32
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("scheduled", 0)]
    assert rows(database_url, "SELECT kind FROM job_logs WHERE job_id=%s AND kind IN ('deferred', 'started')",
                job_id) == [("deferred",)]

    conn.zadd(registry.key, {job_id: time.time() - 1})  # its time comes
    worker = worker_for(fast_engine)
    worker.before_run = gate  # type: ignore[method-assign]
    worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
    job = Job.fetch(job_id, connection=conn)
    assert calls == [job_id, job_id] and job.get_status() == "finished" and job.return_value() == 3
    assert job.number_of_retries is None and conn.hget(job.key, "enqueue_at_front") == b"0"
    fast_engine.flush_history()
    assert rows(database_url, "SELECT status, attempts FROM jobs WHERE id=%s", job_id) == [("finished", 1)]
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE job_id=%s AND kind='deferred'", job_id) == 1


def test_a_deferral_puts_the_rest_of_its_batch_back_in_order(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    ids = fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(9)])
    low = fast_engine.dispatch(jobs.noop, priority="low")
    worker = worker_for(fast_engine, fast_job=60.0)  # every job counts as fast: batches of 1, 2, 4, ...
    worker.before_run = lambda job: 30.0 if job.id == ids[4] else None  # type: ignore[method-assign]
    worker.work(burst=True, logging_level="WARNING")
    # batches [0], [1, 2], [3, 4, 5, 6]: 3 ran, 4 was deferred, 5 and 6 went back to the front of default
    assert statuses(conn, ids) == ["finished"] * 4 + ["scheduled"] + ["queued"] * 4
    assert [x.decode() for x in conn.lrange("rq:queue:default", 0, -1)] == ids[5:]
    assert not any(conn.hget(f"rq:job:{j}", "worker_name") for j in ids[5:])
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    assert Job.fetch(low, connection=conn).get_status() == "finished"  # the held lane did not stop the others


# ---- batches, held jobs, heartbeats -----------------------------------------------------------------

def test_jobs_held_behind_a_slow_job_go_back_to_their_queue(fast_engine: Engine, database_url: str) -> None:
    conn = fast_engine.connection
    first = fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(7)])
    rest = [str(uuid.uuid4()) for _ in range(7)]
    slow = fast_engine.dispatch(peek, 0.4, rest[0])
    fast_engine.dispatch_many([JobSpec(jobs.noop, job_id=j) for j in rest])
    worker = worker_for(fast_engine, fast_job=60.0)  # batches 1, 2, 4, then [slow + 7 more]
    worker.work(burst=True, logging_level="WARNING")
    seen = {k.decode(): v.decode() for k, v in conn.hgetall("peek").items()}
    assert seen == {"queued": "7", "started": "1", "other": "queued"}  # while it ran: the 7 were back on the queue
    assert statuses(conn, [*first, slow, *rest]) == ["finished"] * 15
    fast_engine.flush_history()
    assert scalar(database_url, "SELECT count(*) FROM job_logs WHERE kind='started'") == 15  # each ran once
    assert int(conn.hget(worker.key, "successful_job_count") or 0) == 15


def test_batch_asked_for_ahead_goes_back_when_a_slow_job_runs(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    ahead = [str(uuid.uuid4()) for _ in range(8)]
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(9)])  # batches of 1, 2, 4, then [n, n, slow, n]
    slow = fast_engine.dispatch(peek, 0.4, ahead[0])
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(1)] + [JobSpec(jobs.noop, job_id=j) for j in ahead])
    asked: list[int] = []
    worker = worker_for(fast_engine, max_batch=4)
    original = worker._ask
    worker._ask = lambda limit, claimed=None: asked.append(limit) or original(limit, claimed)  # type: ignore[method-assign]
    worker.work(burst=True, logging_level="WARNING")
    assert 4 in asked  # half way through the full batch, the next one was asked for
    seen = {k.decode(): v.decode() for k, v in conn.hgetall("peek").items()}
    assert seen == {"queued": "9", "started": "1", "other": "queued"}  # the batch asked for went back, in order
    assert statuses(conn, [slow, *ahead]) == ["finished"] * 9
    assert int(conn.hget(worker.key, "successful_job_count") or 0) == 19


def slow_and_look(seconds: float) -> int:
    """Sleep past the worker's flush, then count this job's history entries waiting in Redis."""
    job = get_current_job()
    assert job is not None
    time.sleep(seconds)
    return sum(1 for _, f in job.connection.xrange("jobengine:events") if f[b"j"] == job.id.encode())


def test_fast_runs_send_one_event_and_history_still_gets_both(fast_engine: Engine, database_url: str) -> None:
    ids = fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(20)])
    slow = fast_engine.dispatch(slow_and_look, 0.3)
    worker = worker_for(fast_engine)
    worker.work(burst=True, logging_level="WARNING")
    entries = fast_engine.connection.xrange("jobengine:events")
    assert len(entries) == 22  # one per fast run (its start folded in); the slow run's start left on its own
    assert Job.fetch(slow, connection=fast_engine.connection).return_value() == 1  # visible while it ran
    fast_engine.flush_history()
    logs = rows(database_url, "SELECT job_id, kind, created_at, message FROM job_logs ORDER BY job_id, created_at")
    for job_id in [*ids, slow]:
        mine = [(kind, at, message) for j, kind, at, message in logs if j == job_id]
        assert [kind for kind, _, _ in mine] == ["started", "finished"]
        assert mine[0][1] <= mine[1][1] and mine[0][2] == f"attempt 1 started on {worker.name}"
    assert rows(database_url, "SELECT count(*) FROM jobs WHERE status = 'finished' AND started_at IS NOT NULL "
                "AND attempts = 1 AND worker = %s", worker.name) == [(21,)]


def test_heartbeat_runs_on_a_timer_during_a_long_job(fast_engine: Engine) -> None:
    fast_engine.dispatch(beats, 0.6)
    worker = worker_for(fast_engine, heartbeat_every=0.1)
    worker.work(burst=True, logging_level="WARNING")
    seen = fast_engine.connection.hgetall("beats")
    assert seen[b"before"] and seen[b"after"] and seen[b"after"] > seen[b"before"]


def test_round_trips_stay_far_below_one_per_job(fast_engine: Engine) -> None:
    requests = [0]

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            requests[0] += 1
            super().send_packed_command(command, check_health)

    kwargs = fast_engine.connection.connection_pool.connection_kwargs
    conn = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=Counting, **kwargs))
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(300)])
    worker = FastWorker(["critical", "high", "default", "low"], connection=conn)
    worker.configure(fast_engine.settings, fast_engine.policy)
    start = requests[0]
    worker.work(burst=True, logging_level="WARNING")
    assert Queue("default", connection=conn).count == 0
    assert len(fast_engine.connection.zrange("rq:finished:default", 0, -1)) == 300
    assert requests[0] - start < 300 * 0.5  # RQ's SimpleWorker needs about 20 per job
    conn.close()


# ---- scheduling and odd inputs -------------------------------------------------------------------------

def test_due_jobs_are_promoted_in_rqs_order(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    queue = Queue("default", connection=conn)
    queue.enqueue(note, "queued")
    past = datetime.now(UTC) - timedelta(seconds=5)
    front = queue.create_job(note, args=("front",))
    front.enqueue_at_front = True
    queue.schedule_job(front, past)
    queue.schedule_job(queue.create_job(note, args=("back",)), past)
    worker_for(fast_engine).work(burst=True, with_scheduler=True, logging_level="WARNING")
    assert [x.decode() for x in conn.lrange("order", 0, -1)] == ["front", "queued", "back"]


def test_a_queue_under_an_rq_scheduler_lock_is_left_to_it(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    queue = Queue("default", connection=conn)
    job = queue.schedule_job(queue.create_job(note, args=("x",)), datetime.now(UTC) - timedelta(seconds=5))
    conn.set("rq:scheduler-lock:default", "another-scheduler", ex=60)
    worker_for(fast_engine).work(burst=True, with_scheduler=True, logging_level="WARNING")
    assert Job.fetch(job.id, connection=conn).get_status() == "scheduled"
    conn.delete("rq:scheduler-lock:default")
    worker_for(fast_engine).work(burst=True, with_scheduler=True, logging_level="WARNING")
    assert Job.fetch(job.id, connection=conn).get_status() == "finished"


def test_an_id_without_a_job_hash_is_skipped(fast_engine: Engine) -> None:
    conn = fast_engine.connection
    conn.rpush("rq:queue:default", "vanished-job")
    job_id = fast_engine.dispatch(jobs.add, 2, 2)
    worker_for(fast_engine).work(burst=True, logging_level="WARNING")
    assert Job.fetch(job_id, connection=conn).return_value() == 4
    assert not conn.exists("rq:job:vanished-job") and conn.zcard("rq:wip:default") == 0


class ForgetfulScripts(FastWorker):
    """A worker whose cached script hashes are unknown to Redis (as after SCRIPT FLUSH or a restart)."""

    def _setup(self, with_scheduler: bool) -> None:
        super()._setup(with_scheduler)
        self._shas = {name: "0" * 40 for name in self._shas}


@pytest.mark.parametrize("with_scheduler", [True, False])
def test_scripts_missing_from_redis_are_loaded_again(fast_engine: Engine, with_scheduler: bool) -> None:
    ids = fast_engine.dispatch_many([JobSpec(jobs.add, (i, i)) for i in range(5)])
    worker = ForgetfulScripts(["default"], connection=fast_engine.connection)
    worker.configure(fast_engine.settings, fast_engine.policy)
    worker.work(burst=True, with_scheduler=with_scheduler, logging_level="WARNING")
    assert [Job.fetch(j, connection=fast_engine.connection).return_value() for j in ids] == [0, 2, 4, 6, 8]


def test_the_background_lane_is_taken_in_small_batches_the_others_in_full_ones(fast_engine: Engine) -> None:
    """A job dispatched to a higher lane while the last lane drains waits behind at most
    `background_batch` jobs of it in hand (and as many asked ahead); other lanes keep full batches."""
    conn = fast_engine.connection

    def started(queues: list[str]) -> FastWorker:
        worker = FastWorker(queues, connection=conn)
        worker.configure(fast_engine.settings, fast_engine.policy)
        worker._setup(False)
        worker.register_birth()
        return worker

    fast_engine.dispatch_many([JobSpec(jobs.noop, priority="low") for _ in range(40)])
    worker = started(["critical", "high", "default", "low"])
    low = worker._fetch(32)
    assert low is not None and len(low) == worker.background_batch == 8 and {h.queue for h in low} == {"low"}
    fast_engine.dispatch_many([JobSpec(jobs.noop) for _ in range(40)])
    normal = worker._fetch(32)
    assert normal is not None and len(normal) == 32 and {h.queue for h in normal} == {"default"}
    only = started(["low"])._fetch(32)
    assert only is not None and len(only) == 32  # a worker of one queue has no higher lane to serve
