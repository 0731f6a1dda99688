"""History lag under load: how long an event takes to become a PostgreSQL row while workers run.

First the durable maximum of `--processes` worker processes is measured (a backlog drained until
every history row is in PostgreSQL, as `bench.worker_throughput --processes`). Then a producer
dispatches no-op jobs at `--load` (default 80%) of that rate for `--seconds` into the same number
of long-running worker processes, each with its history writer thread. It prints the lag of every
history row (its event time to the moment the writer inserted it, stamped by a `clock_timestamp()`
column added to this scratch database only) p50/p99/max, the largest events-stream length and
the stream's Redis memory at that moment, and fails unless the stream is empty and every job's
rows are in PostgreSQL within `--drain` seconds of the producer stopping. `--timeline` prints,
per second of event time, the rows, their worst lag and the transactions that wrote them (the
lag spikes of a deadlock show as a second with almost no events).

    python -m bench.history_lag --seconds 60 --own-redis
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from bench.common import parser, scratch_database
from bench.contenders import Children, redis_pid
from bench.cpu import CpuSampler, pg_backends
from bench.worker_throughput import given_redis, own_redis, processes, settings_for
from jobengine import Engine, JobSpec, keys
from jobengine.demo import noop


def produce(engine: Engine, conn: redis.Redis, rate: float, seconds: float) -> tuple[int, int, int]:
    """Dispatch at `rate` jobs/s for `seconds` in ticks of 10 ms; returns (jobs, the largest stream
    length seen, the stream's Redis memory in bytes at that moment)."""
    sent, peak, peak_bytes = 0, 0, 0
    start = time.perf_counter()
    next_sample = start
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(rate * elapsed) - sent
        if due > 0:
            engine.dispatch_many([JobSpec(noop, priority="normal") for _ in range(due)])
            sent += due
        now = time.perf_counter()
        if now >= next_sample:
            length = int(conn.xlen(keys.EVENTS_STREAM))
            if length > peak:
                peak, peak_bytes = length, int(conn.memory_usage(keys.EVENTS_STREAM, samples=0) or 0)
            next_sample = now + 0.1
        time.sleep(max(0.0, 0.01 - (time.perf_counter() - now)))
    return sent, peak, peak_bytes


def finished_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as pg:
        row = pg.execute("SELECT count(*) FROM jobs WHERE status = 'finished'").fetchone()
    return int(row[0]) if row else 0


def print_timeline(database_url: str) -> None:
    """Per second of event time: rows, the worst lag, and the transactions that wrote them (count
    and largest), to see where a lag spike comes from."""
    with psycopg.connect(database_url) as pg:
        rows = pg.execute("""
            WITH lagged AS (
                SELECT date_trunc('second', created_at) AS second, applied_in,
                       extract(epoch FROM applied_at - created_at) AS lag FROM job_logs),
            batches AS (SELECT applied_in, count(*) AS size FROM job_logs GROUP BY applied_in)
            SELECT l.second, count(*), max(l.lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY l.lag),
                   count(DISTINCT l.applied_in), max(b.size)
            FROM lagged l JOIN batches b USING (applied_in) GROUP BY l.second ORDER BY l.second""").fetchall()
    print("second  rows  max lag ms  p99 ms  transactions  largest")
    start = rows[0][0] if rows else None
    for second, count, worst, p99, xacts, largest in rows:
        print(f"{(second - start).total_seconds():6.0f} {count:6,} {worst * 1000:10.0f} {p99 * 1000:7.0f} "
              f"{xacts:13,} {largest:8,}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the producer dispatches")
    p.add_argument("--load", type=float, default=0.8, help="fraction of the measured durable maximum")
    p.add_argument("--rate", type=float, help="jobs/s to dispatch instead (skips the maximum)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--drain", type=float, default=5.0, help="seconds allowed to drain after the producer")
    p.add_argument("--timeline", action="store_true", help="print lag and batches per second of event time")
    p.add_argument("--own-redis", action="store_true", help="Run against a private redis-server.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with (own_redis() if args.own_redis else given_redis(args.redis_url)) as redis_url, \
            scratch_database(args.pg_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        Engine(settings_for(redis_url, database_url)).close()  # migrate once
        conn = redis.Redis.from_url(redis_url)
        rate = args.rate
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        if rate is None:
            best = processes(conn, redis_url, database_url, 10000, args.processes, Path(tmp))
            rate = best.durable_rate * args.load
            print(f"durable maximum, {args.processes} processes: {best.durable_rate:,.0f} jobs/s; "
                  f"dispatching {rate:,.0f} jobs/s ({args.load:.0%}) for {args.seconds:g} s")
        conn.flushdb()
        with psycopg.connect(database_url, autocommit=True) as pg:
            pg.execute("TRUNCATE jobs, job_logs, failed_jobs")
            pg.execute("ALTER TABLE job_logs ADD COLUMN IF NOT EXISTS applied_at timestamptz "
                       "DEFAULT clock_timestamp(), ADD COLUMN IF NOT EXISTS applied_in xid8 "
                       "DEFAULT pg_current_xact_id()")
        workers = Children("ours", args.processes, redis_url, database_url, Path(tmp), serve=True)
        backends = pg_backends(database_url)
        sampler = CpuSampler({"workers": lambda: workers.pids, "redis": redis_pid(conn), "postgres": backends})
        try:
            workers.go()
            sampler.start()
            with Engine(settings_for(redis_url, database_url), migrate=False) as engine:
                sent, peak, peak_bytes = produce(engine, conn, rate, args.seconds)
            stopped = time.perf_counter()
            while (conn.xlen(keys.EVENTS_STREAM) or finished_rows(database_url) < sent) \
                    and time.perf_counter() - stopped < args.drain + 30:
                time.sleep(0.02)
            drained = time.perf_counter() - stopped
            used = sampler.stop()
        finally:
            workers.stop()
            workers.wait(timeout=60)
            backends.close()  # type: ignore[attr-defined]
        with psycopg.connect(database_url) as pg:
            lag = pg.execute("""
                SELECT count(*),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - created_at)),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - created_at)),
                       max(extract(epoch FROM applied_at - created_at))
                FROM job_logs""").fetchone()
        assert lag is not None
        print(f"dispatched {sent:,} jobs in {args.seconds:g} s ({sent / args.seconds:,.0f} jobs/s) into "
              f"{args.processes} worker processes")
        print(f"history lag over {lag[0]:,} rows: p50 {lag[1] * 1000:.0f} ms, p99 {lag[2] * 1000:.0f} ms, "
              f"max {lag[3] * 1000:.0f} ms")
        print(f"largest stream length {peak:,} entries ({peak_bytes / 1024:,.0f} KiB of Redis memory, "
              f"MEMORY USAGE)")
        print("CPU while producing (cores busy): " + ", ".join(
            f"{name} {seconds / sampler.seconds:.2f}" for name, seconds in used.items()) +
            f", machine {sampler.busy / sampler.seconds:.2f} of {os.cpu_count()}")
        print(f"stream drained and every row in PostgreSQL {drained:.2f} s after the producer stopped")
        if args.timeline:
            print_timeline(database_url)
        if drained > args.drain:
            raise SystemExit(f"FAIL: not drained within {args.drain:g} s")


if __name__ == "__main__":
    main()
