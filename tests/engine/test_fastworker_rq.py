"""FastWorker where RQ's own suite found it differing from RQ's worker (tests/compat), one focused
test each, on real Redis: returned Retry, result_ttl=0 parents, burst dependents, canceled
parents, callbacks' status, disable_default_exception_handler, key prefixes, RQ rate-limit slots,
failed webhooks, dequeue strategies, the shutdown date, the idle state, the worker TTL; and a
failure requeued through RQ's API leaving our failed list."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import redis
from rq import Queue, Retry, get_current_job
from rq.job import Callback, Job, JobStatus
from rq.rate_limit import RateLimit, RateLimitRegistry
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.webhook import Webhook

from jobengine import Engine
from jobengine.config import Settings
from jobengine.retry import RetryPolicy
from jobengine.runtime.fastworker import FastWorker
from jobengine.runtime.jobinfo import WORKER_TTL
from jobengine.runtime.worker import ForkingJobWorker, JobWorker
from tests.engine import jobs
from tests.engine.helpers import run_until_idle

HERE = "tests.engine.test_fastworker_rq"


# ---- job functions (importable as tests.engine.test_fastworker_rq.*) -------------------------------

def retry_once() -> str:
    """Returns rq.Retry on its first run, then finishes."""
    job = get_current_job()
    assert job is not None
    return "done" if job.number_of_retries else Retry(max=3)  # type: ignore[return-value]


def always_retry() -> Retry:
    return Retry(max=1)


def fail_then_pass(key: str) -> str:
    """Fails while the Redis counter `key` is 1 (its first run), passes afterwards."""
    job = get_current_job()
    assert job is not None
    if job.connection.incr(key) == 1:
        raise ValueError("first run fails")
    return "ok"


def note(name: str) -> str:
    job = get_current_job()
    assert job is not None
    job.connection.rpush("order", name)
    return name


def signal_self() -> None:
    """Asks its own worker to stop (SIGTERM), as an operator would, then finishes."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)


def status_seen(job: Job, connection: redis.Redis, *args: Any) -> None:
    """A callback: note the status the job reports without reading Redis."""
    connection.rpush("seen", JobStatus(job.get_status(refresh=False)).value)


class PrefixedJob(Job):
    redis_job_namespace_prefix = "custom:job:"


class PrefixedQueue(Queue):
    redis_queue_namespace_prefix = "custom:queue:"
    job_class = PrefixedJob


# ---- helpers -----------------------------------------------------------------------------------------

def rq_worker(conn: redis.Redis, queues: list[Queue] | list[str], cls: type = FastWorker, **kwargs: Any) -> Any:
    """A worker as a plain RQ user builds one (no engine), configured from defaults."""
    worker = cls(queues, connection=conn, **kwargs)
    settings = Settings.load(env={})
    worker.configure(settings, RetryPolicy.from_settings(settings))
    return worker


def burst(worker: Any, **kwargs: Any) -> bool:
    return bool(worker.work(burst=True, logging_level="WARNING", **kwargs))


# ---- (1) a returned Retry ------------------------------------------------------------------------------

def test_a_job_returning_retry_is_retried_then_fails_when_retries_run_out(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    job = q.enqueue(f"{HERE}.retry_once")
    burst(rq_worker(redis_conn, [q]))  # retried at once, run again in the same burst
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "done"
    assert job.number_of_retries == 1
    assert [r.type for r in job.results()] == [Result.Type.SUCCESSFUL, Result.Type.RETRIED]

    gone = q.enqueue(f"{HERE}.always_retry")
    burst(rq_worker(redis_conn, [q]))
    assert gone.get_status() == JobStatus.FAILED and gone.id in FailedJobRegistry(queue=q)
    assert gone.latest_result().type == Result.Type.MAX_RETRIES_EXCEEDED  # type: ignore[union-attr]


# ---- (2) (3) dependents: result_ttl=0 parents, burst ----------------------------------------------------

def test_dependents_of_a_result_ttl_0_job_run_in_the_same_burst(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    parent = q.enqueue(f"{HERE}.note", "parent", result_ttl=0)
    child = q.enqueue(f"{HERE}.note", "child", depends_on=parent)
    grandchild = q.enqueue(f"{HERE}.note", "grandchild", depends_on=child)
    assert burst(rq_worker(redis_conn, [q]))
    assert redis_conn.lrange("order", 0, -1) == [b"parent", b"child", b"grandchild"]
    assert not redis_conn.exists(parent.key, parent.dependents_key)  # deleted, as RQ's job.delete()
    assert child.get_status() == grandchild.get_status() == JobStatus.FINISHED


# ---- (4) a parent canceled while it runs ------------------------------------------------------------

def test_dependents_of_a_job_canceled_while_running_stay_deferred(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    parent = q.enqueue(jobs.sleepy, 0.5)
    child = q.enqueue(f"{HERE}.note", "child", depends_on=parent)

    def cancel() -> None:
        while parent.get_status() != JobStatus.STARTED:
            time.sleep(0.01)
        parent.cancel()

    canceler = threading.Thread(target=cancel)
    canceler.start()
    burst(rq_worker(redis_conn, [q]))
    canceler.join()
    assert child.get_status() == JobStatus.DEFERRED and not redis_conn.exists("order")


# ---- (5) callbacks see the final status --------------------------------------------------------------

def test_callbacks_see_the_final_status_without_reading_redis(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    q.enqueue(jobs.add, 1, 2, on_success=Callback(status_seen))
    q.enqueue(jobs.broken, on_failure=Callback(status_seen))
    burst(rq_worker(redis_conn, [q]))
    assert redis_conn.lrange("seen", 0, -1) == [b"finished", b"failed"]


# ---- (6) disable_default_exception_handler -----------------------------------------------------------

def test_disable_default_exception_handler_keeps_failures_out_of_the_failed_registry(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    job = q.enqueue(jobs.broken)
    burst(rq_worker(redis_conn, [q], disable_default_exception_handler=True))
    assert job.get_status() == JobStatus.FAILED and job.id not in FailedJobRegistry(queue=q)
    kept = q.enqueue(jobs.broken)
    burst(rq_worker(redis_conn, [q]))
    assert kept.id in FailedJobRegistry(queue=q)


# ---- (7) job and queue classes with their own key prefix ------------------------------------------------

def test_job_and_queue_classes_with_their_own_key_prefix(redis_conn: redis.Redis) -> None:
    q = PrefixedQueue("default", connection=redis_conn, job_class=PrefixedJob)
    job = q.enqueue(f"{HERE}.note", "prefixed")
    due = q.enqueue_at(datetime.now(UTC) - timedelta(seconds=5), f"{HERE}.note", "due")
    assert redis_conn.exists("custom:queue:default", "custom:job:" + job.id, "custom:job:" + due.id) == 3
    worker = rq_worker(redis_conn, [q], job_class=PrefixedJob, queue_class=PrefixedQueue)
    assert burst(worker, with_scheduler=True)  # dequeue.lua, promote.lua and finish.lua use the prefixes
    assert redis_conn.lrange("order", 0, -1) == [b"prefixed", b"due"]
    assert PrefixedJob.fetch(job.id, connection=redis_conn).return_value() == "prefixed"
    assert due.get_status() == JobStatus.FINISHED
    assert not redis_conn.exists("rq:job:" + job.id) and not redis_conn.llen("custom:queue:default")


# ---- (8) RQ rate limits: a retried job gives its slot back ------------------------------------------------

def test_a_rate_limited_job_retried_with_a_delay_releases_its_slot(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    limit = RateLimit(key="api", concurrency=1)
    first = q.enqueue(jobs.broken, rate_limit=limit, retry=Retry(max=1, interval=60))
    waiting = q.enqueue(jobs.add, 1, 1, rate_limit=limit)
    assert waiting.get_status() == JobStatus.RATE_LIMITED
    burst(rq_worker(redis_conn, [q]))
    assert first.get_status() == JobStatus.SCHEDULED
    assert waiting.get_status() == JobStatus.FINISHED  # the slot went to it, and it ran
    assert first.id not in RateLimitRegistry(key="api", connection=redis_conn).get_allowed_job_ids()


# ---- (9) failed webhooks carry exc_string -------------------------------------------------------------

def test_failed_webhooks_carry_the_exception_string(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    hooks = [Webhook("http://example.invalid/done", job_status="finished"),
             Webhook("http://example.invalid/failed", job_status="failed")]
    q.enqueue(jobs.broken, 7, webhooks=hooks)
    q.enqueue(jobs.add, 1, 2, webhooks=hooks)
    with mock.patch.object(Webhook, "send", autospec=True) as send:
        burst(rq_worker(redis_conn, [q]))
    sent = {call.args[0].job_status: call.kwargs.get("exc_string") for call in send.call_args_list}
    assert set(sent) == {"failed", "finished"} and send.call_count == 2
    assert "ValueError: bad value 7" in sent["failed"] and sent["finished"] is None


# ---- (10) dequeue strategies ----------------------------------------------------------------------------

def test_round_robin_takes_one_job_from_each_queue_in_turn(redis_conn: redis.Redis) -> None:
    queues = [Queue(f"q{i}", connection=redis_conn) for i in range(3)]
    for n in range(2):
        for i, q in enumerate(queues):
            q.enqueue(f"{HERE}.note", f"q{i}_{n}")
    burst(rq_worker(redis_conn, queues), dequeue_strategy="round_robin")
    assert [v.decode() for v in redis_conn.lrange("order", 0, -1)] == ["q0_0", "q1_0", "q2_0", "q0_1", "q1_1", "q2_1"]
    with pytest.raises(ValueError, match="not allowed"):
        burst(rq_worker(redis_conn, queues), dequeue_strategy="sideways")


def test_random_strategy_takes_every_job(redis_conn: redis.Redis) -> None:
    queues = [Queue(f"q{i}", connection=redis_conn) for i in range(4)]
    for i, q in enumerate(queues):
        q.enqueue(f"{HERE}.note", f"q{i}")
    burst(rq_worker(redis_conn, queues), dequeue_strategy="random")
    assert sorted(redis_conn.lrange("order", 0, -1)) == [b"q0", b"q1", b"q2", b"q3"]


# ---- (11) (12) shutdown date, idle state ------------------------------------------------------------------

def test_a_stop_request_is_dated_in_redis_and_the_worker_ends_idle(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    q.enqueue(f"{HERE}.signal_self")
    q.enqueue(jobs.noop)  # not run: the worker stops after the job that asked
    worker = rq_worker(redis_conn, [q])
    previous = signal.getsignal(signal.SIGTERM)
    try:
        worker.work(logging_level="WARNING")  # not burst: it leaves because of the request
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert redis_conn.hget(worker.key, "shutdown_requested_date")
    assert worker.shutdown_requested_date is not None and q.count == 1
    assert redis_conn.hget(worker.key, "state") == b"idle"


def test_the_worker_is_idle_after_a_burst(redis_conn: redis.Redis) -> None:
    q = Queue("default", connection=redis_conn)
    q.enqueue(jobs.add, 1, 1)
    worker = rq_worker(redis_conn, [q])
    burst(worker)
    assert redis_conn.hget(worker.key, "state") == b"idle" and worker.get_state() == "idle"


# ---- worker TTL: ours by default, the user's when given ------------------------------------------------------

@pytest.mark.parametrize("cls", [FastWorker, JobWorker, ForkingJobWorker])
def test_a_worker_ttl_given_is_kept_and_ours_is_the_default(redis_conn: redis.Redis, cls: type) -> None:
    assert rq_worker(redis_conn, ["default"], cls).worker_ttl == WORKER_TTL
    assert rq_worker(redis_conn, ["default"], cls, worker_ttl=300).worker_ttl == 300


# ---- a failure requeued through RQ leaves our failed list ------------------------------------------------------

@pytest.mark.parametrize("kind", ["fast", "classic"])
def test_a_failure_requeued_through_rq_leaves_our_failed_list(fast_engine: Engine, kind: str) -> None:
    job_id = fast_engine.dispatch(f"{HERE}.fail_then_pass", f"runs:{kind}", priority="high")
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    assert [f.job_id for f in fast_engine.failed_jobs()] == [job_id]
    Job.fetch(job_id, connection=fast_engine.connection).requeue()  # as rq-dashboard's requeue does
    worker = fast_engine.worker(classic=kind == "classic")
    worker.work(burst=True, logging_level="WARNING")
    fast_engine.flush_history()
    assert fast_engine.failed_jobs() == [] and fast_engine.store.failed_total() == 0
    assert Job.fetch(job_id, connection=fast_engine.connection).return_value() == "ok"
