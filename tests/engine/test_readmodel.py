"""The read model: one probe of per-queue Redis state behind the snapshot, health and the scrape;
RQ's key names from RQ's own templates; typed outages; the modules' import directions."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from jobengine import Engine, JobSpec, Settings, keys
from jobengine.monitor import QueueRead, probe_queues
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def limited(redis_url: str, database_url: str) -> Iterator[Engine]:
    """Zero-delay lanes, `default` limited to 50/min and watched over 3 jobs, `low` limited to 9/min."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES),
                             limits={"default": 50, "low": 9}, queue_size={"default": 3})
    eng = Engine(settings)
    yield eng
    eng.close()


def _scrape(engine: Engine) -> dict[str, dict[str, float]]:
    """Metric name -> queue -> value, for the per-queue gauges of one scrape."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(engine.metrics_text()):
        for sample in family.samples:
            if "queue" in sample.labels and family.name.startswith("queue_"):
                out.setdefault(family.name, {})[sample.labels["queue"]] = sample.value
    return out


def _load(engine: Engine) -> None:
    """On `default`: 3 finished and 1 failed (4 window hits), then 5 waiting and 1 scheduled."""
    engine.dispatch_many([JobSpec(jobs.noop) for _ in range(3)] + [JobSpec(jobs.broken)])
    engine.worker().work(burst=True, logging_level="WARNING")
    engine.dispatch_many([JobSpec(jobs.noop) for _ in range(5)] + [JobSpec(jobs.noop, delay=3600)])


def test_probe_reads_what_redis_holds(limited: Engine) -> None:
    _load(limited)
    conn = limited.connection
    probe = {p.name: p for p in limited.monitor.probe()}
    default = probe["default"]
    assert (default.size, default.scheduled, default.started, default.failed) == (5, 1, 0, 1)
    assert default.processed == int(conn.get(keys.queue_processed_key("default"))) == 3
    assert (default.rate_limit, default.rate_used) == (50, 4)
    assert default.oldest_wait is not None and 0 <= default.oldest_wait < 60
    assert (probe["low"].size, probe["low"].rate_limit, probe["low"].rate_used, probe["low"].oldest_wait) == \
        (0, 9, 0, None)
    assert probe["critical"].rate_limit is None and probe["critical"].processed == 0
    # the same numbers as RQ's own API
    assert default.size == Queue("default", connection=conn).count
    assert default.scheduled == ScheduledJobRegistry("default", connection=conn).count
    assert default.failed == FailedJobRegistry("default", connection=conn).count


def test_probe_is_one_round_trip_and_survives_a_head_without_hash(limited: Engine) -> None:
    conn = limited.connection
    conn.rpush(keys.rq_queue_key("default"), "ghost")  # a job id whose hash is gone
    limited.dispatch(jobs.noop, priority="low")
    commands = []
    pipeline = conn.pipeline

    def counting(*args: object, **kwargs: object) -> redis.client.Pipeline:
        pipe = pipeline(*args, **kwargs)  # type: ignore[arg-type]
        commands.append(pipe)
        return pipe

    conn.pipeline = counting  # type: ignore[method-assign]
    try:
        probes = {p.name: p for p in probe_queues(conn, limited.settings)}
    finally:
        del conn.pipeline
    assert len(commands) == 1  # one pipeline for every queue
    assert (probes["default"].size, probes["default"].oldest_wait) == (1, None)
    assert probes["low"].oldest_wait is not None
    assert len(QueueRead(["a", "b"], {}, time.time())) == 2 * QueueRead.PER_QUEUE + 3  # + limits, paused, heads


def test_snapshot_health_and_scrape_agree_after_an_override(limited: Engine) -> None:
    _load(limited)
    limited.set_limit("default", 7)  # run-time override wins over the configured 50
    limited.set_limit("low", None)  # "off" wins over the configured 9
    probe = {p.name: p for p in limited.monitor.probe()}
    snap = {q.name: q for q in limited.monitor.snapshot(shared=False).queues}
    scrape = _scrape(limited)
    health = limited.health()

    assert (probe["default"].rate_limit, probe["default"].rate_used) == (7, 4)
    assert (snap["default"].size, snap["default"].rate_limit, snap["default"].rate_used) == (5, 7, 4)
    assert (scrape["queue_size"]["default"], scrape["queue_rate_limit"]["default"],
            scrape["queue_rate_used"]["default"]) == (5, 7, 4)
    assert (snap["default"].scheduled, snap["default"].failed) == (scrape["queue_scheduled"]["default"],
                                                                   scrape["queue_failed"]["default"]) == (1, 1)
    assert "Queue default holds 5 jobs, over its threshold of 3." in health.reasons
    # off: no limit anywhere, and the console shows no use for an unlimited queue
    assert probe["low"].rate_limit is None and snap["low"].rate_limit is None and snap["low"].rate_used == 0
    assert "low" not in scrape["queue_rate_limit"]
    assert limited.limiter.table.effective("low", fresh=True) is None
    assert limited.limiter.table.effective("default", fresh=True).amount == 7
    rows = {r.queue: r.effective for r in limited.limits()}
    assert rows["default"].amount == 7 and rows["low"] is None

    limited.reset_limit("default")
    assert next(p for p in limited.monitor.probe() if p.name == "default").rate_limit == 50
    assert _scrape(limited)["queue_rate_limit"]["default"] == 50


def test_outages_are_typed(settings: Settings) -> None:
    dead = Settings.load(env={}, redis_url="redis://127.0.0.1:1/0", database_url=settings.database_url)
    with Engine(dead) as engine:
        snap = engine.monitor.snapshot(shared=False)
        assert [o.component for o in snap.outages] == ["redis"]
        assert snap.outages[0].message.startswith("Redis unreachable: ")
        health = engine.health()
        assert (health.verdict, health.redis_ok, health.postgres_ok) == ("unknown", False, True)
        assert health.reasons[0].startswith("Redis at 127.0.0.1:1/0 is unreachable")


def test_rq_keys_come_from_rqs_own_templates(redis_conn: redis.Redis) -> None:
    job = Job.create(jobs.noop, connection=redis_conn, id="k1")
    assert keys.rq_queue_key("q") == Queue("q", connection=redis_conn).key
    assert keys.rq_queue_name(Queue("q", connection=redis_conn).key.encode()) == "q"
    job_key = job.key.decode() if isinstance(job.key, bytes) else job.key
    assert keys.rq_job_key("k1") == job_key == "rq:job:k1"
    for helper, registry in ((keys.rq_started_key, StartedJobRegistry), (keys.rq_scheduled_key, ScheduledJobRegistry),
                             (keys.rq_failed_key, FailedJobRegistry), (keys.rq_finished_key, FinishedJobRegistry),
                             (keys.rq_canceled_key, CanceledJobRegistry)):
        assert helper("q") == registry("q", connection=redis_conn).key
    assert keys.rq_worker_name(keys.rq_worker_key("w1")) == "w1"


@pytest.mark.parametrize(("module", "absent"), [
    ("jobengine.health", "jobengine.monitor"),
    ("jobengine.metrics", "prometheus_client"),
])
def test_import_directions(module: str, absent: str) -> None:
    code = f"import sys, {module}; sys.exit({absent!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0
