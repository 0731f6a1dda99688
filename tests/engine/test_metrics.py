"""Metrics: counters and per-minute buckets written with the bookkeeping; Prometheus export."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from jobengine import Engine, JobSpec
from jobengine.exporter import exposition, serve
from jobengine.keys import METRICS_PROCESSED, minute_bucket_key, queue_processed_key
from jobengine.runtime.bookkeeping import record
from jobengine.types import EventKind
from tests.engine import jobs
from tests.engine.helpers import run_until_idle

ROOT = Path(__file__).resolve().parents[2]


def _burst(engine: Engine) -> None:
    """12 jobs finish on `default`, 4 on `high`, 3 fail for good on `default`."""
    specs = [JobSpec(jobs.add, (i, 1), type="sum") for i in range(12)]
    specs += [JobSpec(jobs.noop, type="ping", priority="high") for _ in range(4)]
    specs += [JobSpec(jobs.broken, (i,), type="sum") for i in range(3)]
    engine.dispatch_many(specs)
    run_until_idle(engine)


def test_record_only_appends_to_the_callers_pipeline(redis_conn: redis.Redis) -> None:
    with redis_conn.pipeline() as pipe:
        record(pipe, EventKind.FINISHED, "j1", "default", type="sum", duration="0.2")
        queued = len(pipe)
        assert queued >= 8  # event, counters, timing, bucket, processed counter, cache invalidation
        assert redis_conn.hgetall(METRICS_PROCESSED) == {}  # nothing sent yet: no round trip of its own
        pipe.execute()
    assert redis_conn.hgetall(METRICS_PROCESSED) == {b'["sum","default","finished"]': b"1"}


def test_buckets_and_counters_after_a_burst(fast_engine: Engine) -> None:
    before = int(time.time() // 60)
    _burst(fast_engine)
    after = int(time.time() // 60)
    conn = fast_engine.connection
    buckets = [conn.hgetall(minute_bucket_key(m)) for m in range(before, after + 1)]
    assert sum(int(b.get(b"p:default", 0)) for b in buckets) == 12
    assert sum(int(b.get(b"p:high", 0)) for b in buckets) == 4
    assert sum(int(b.get(b"f:default", 0)) for b in buckets) == 3
    assert 0 < conn.ttl(minute_bucket_key(after)) <= 7 * 3600  # kept seven hours: the console shows up to six
    assert int(conn.get(queue_processed_key("default"))) == 12
    assert 3500 < conn.ttl(queue_processed_key("default")) <= 3600  # the specification's expiry

    snap = fast_engine.monitor.snapshot(shared=False)
    default = next(q for q in snap.queues if q.name == "default")
    assert len(default.processed_per_minute) == 60 and sum(default.processed_per_minute) == 12
    assert sum(default.failed_per_minute) == 3
    assert len(snap.throughput) == 60
    assert sum(p.processed for p in snap.throughput) == 16 and sum(p.failed for p in snap.throughput) == 3
    assert snap.throughput[-1].minute.timestamp() == after * 60


def test_throughput_comes_from_redis_not_postgresql(fast_engine: Engine, database_url: str) -> None:
    _burst(fast_engine)  # history not flushed: PostgreSQL has no finished rows yet
    snap = fast_engine.monitor.snapshot(shared=False)
    assert sum(p.processed for p in snap.throughput) == 16
    assert fast_engine.store.throughput_per_minute(snap.throughput[0].minute) and \
        sum(p.processed for p in fast_engine.store.throughput_per_minute(snap.throughput[0].minute)) == 0


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_text_parses_and_matches_redis(fast_engine: Engine) -> None:
    _burst(fast_engine)
    fast_engine.dispatch_many([JobSpec(jobs.noop, priority="low") for _ in range(3)])  # waiting, no worker
    families = _families(fast_engine.metrics_text())
    processed = {tuple(sorted(s.labels.items())): s.value for s in families["jobs_processed"].samples}
    assert processed[(("queue", "default"), ("status", "finished"), ("type", "sum"))] == 12
    assert processed[(("queue", "default"), ("status", "failed"), ("type", "sum"))] == 3
    assert processed[(("queue", "high"), ("status", "finished"), ("type", "ping"))] == 4
    failed = {(s.labels["type"], s.labels["error"]): s.value for s in families["jobs_failed"].samples}
    assert failed == {("sum", "ValueError"): 3}
    sizes = {s.labels["queue"]: s.value for s in families["queue_size"].samples}
    assert sizes == {"critical": 0, "high": 0, "default": 0, "low": 3}
    histogram = families["jobs_duration_seconds"]
    count = {s.labels["type"]: s.value for s in histogram.samples if s.name == "jobs_duration_seconds_count"}
    assert count == {"sum": 15, "ping": 4}
    inf = [s.value for s in histogram.samples
           if s.name == "jobs_duration_seconds_bucket" and s.labels == {"type": "sum", "le": "+Inf"}]
    assert inf == [15]
    assert families["jobengine_redis_up"].samples[0].value == 1


def test_scraping_never_touches_postgresql(fast_engine: Engine) -> None:
    _burst(fast_engine)
    dead_db = replace(fast_engine.settings, database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    families = _families(exposition(fast_engine.connection, dead_db))
    assert sum(s.value for s in families["jobs_processed"].samples) == 19


def test_http_endpoint_and_cli_once(fast_engine: Engine, redis_url: str, database_url: str) -> None:
    _burst(fast_engine)
    server = serve(fast_engine.connection, fast_engine.settings, 0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    families = _families(text)
    assert "process_cpu_seconds" in families  # the worker's endpoint adds its own process metrics
    assert sum(s.value for s in families["jobs_processed"].samples) == 19

    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                             database_url, "metrics", "--once"], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sum(s.value for s in _families(result.stdout)["jobs_processed"].samples) == 19


def test_worker_serves_metrics_while_it_runs(fast_engine: Engine, redis_url: str, database_url: str) -> None:
    import signal
    import socket

    _burst(fast_engine)
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    worker = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                               database_url, "worker", "--metrics-port", str(port)], env=env, cwd=ROOT,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
                if _families(text)["workers"].samples[0].value == 1:  # served before the worker registers too
                    break
            except OSError:
                if worker.poll() is not None:
                    raise
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    families = _families(text)
    assert sum(s.value for s in families["jobs_processed"].samples) == 19
    assert families["workers"].samples[0].value == 1
