"""Console snapshot cost against history size: 10k jobs, then 1M jobs (100k of them failed).

Fills PostgreSQL with generate_series (a tenth of the jobs failed, each with a failed_jobs row;
100 of the first 10k still processing long after their start, so both sizes list 100 stuck jobs;
two job_logs rows per job), puts a few hundred jobs on the lanes in Redis, registers eight RQ
workers (three running a job: their execution records), writes the time buckets of a week at
the history's rate (as workers do: minute buckets for 7 h, hour buckets for 8 days), then times
one full snapshot computation (`engine.monitor.snapshot(shared=False)`: everything the dashboard
shows plus the first page of failed and stuck jobs; consoles share one per refresh) and each
chart window's read (`window_stats`: throughput series and p50/p95 per type for 1h, 6h, 24h, 7d)
and prints p50/p95 at each size, the ratio 1M/10k and the bench process's resident memory; for
the record, the same percentiles from PostgreSQL (percentile_cont over the window's rows, what
the buckets replace). Then, at the
largest size, it runs the console itself (the real `JobTUI` on the real engine, headless at
120x40, in a process of its own so the bench's data does not count): about ten live refreshes
at 0.2 s on the dashboard, each chart window, the failed list paged ten times by keyset, grouped
failures, the stuck list, the dashboard again; it prints what that process did and its peak
resident memory.

    python -m bench.console_snapshot [--sizes 10000,1000000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from bench.common import parser, scratch_database
from jobengine import Engine, JobSpec, Settings
from jobengine.demo import noop
from jobengine.metrics import WINDOWS

FILL = """
INSERT INTO jobs (id, type, queue, priority, status, attempts, func, args, created_at, started_at,
                  finished_at, failed_at, duration, updated_at)
SELECT 'bench-' || n, (ARRAY['email','image','report','payment'])[1 + n % 4],
       (ARRAY['critical','high','default','low'])[1 + n % 4], 3 - n % 4,
       CASE WHEN n % 10 = 0 THEN 'failed' WHEN n <= 10000 AND n % 100 = 7 THEN 'processing' ELSE 'finished' END,
       1 + n % 3, 'app.tasks.work', '(1, 2)',
       now() - (n % 10080) * interval '1 minute', now() - (n % 10080) * interval '1 minute',
       CASE WHEN n > 10000 OR n % 100 <> 7 THEN now() - (n % 10080) * interval '1 minute' + interval '2 seconds' END,
       CASE WHEN n % 10 = 0 THEN now() - (n % 10080) * interval '1 minute' + interval '2 seconds' END,
       2.0, now() - (n % 10080) * interval '1 minute'
FROM generate_series(%(start)s, %(stop)s) AS n;
INSERT INTO failed_jobs (job_id, type, queue, error_class, error_message, traceback, fingerprint, failed_at, attempts)
SELECT 'bench-' || n, 'email', (ARRAY['critical','high','default','low'])[1 + n % 4],
       (ARRAY['TimeoutError','ValueError','KeyError','jobengine.errors.TemporaryError'])[1 + n % 4],
       'failure number ' || n, 'Traceback (most recent call last):\n  ...', 'fp' || (n % 40),
       now() - (n % 10080) * interval '1 minute' + interval '2 seconds', 1 + n % 3
FROM generate_series(%(start)s, %(stop)s) AS n WHERE n % 10 = 0;
INSERT INTO job_logs (job_id, created_at, kind, level, attempt, message)
SELECT 'bench-' || n, now() - (n % 10080) * interval '1 minute', k, 'info', 1, k
FROM generate_series(%(start)s, %(stop)s) AS n, unnest(ARRAY['started','finished']) AS k;
"""


TYPES = ("email", "image", "report", "payment")
PERCENTILES_SQL = """
SELECT type, count(*) AS runs, percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) AS p95
FROM jobs WHERE finished_at >= now() - %(span)s * interval '1 second' AND duration IS NOT NULL
GROUP BY type
"""


def fill_buckets(conn: redis.Redis, per_minute: int) -> None:
    """A week of time buckets at `per_minute` runs a minute, as `record_metrics` writes them."""
    from jobengine.keys import hour_bucket_key, minute_bucket_key
    from jobengine.metrics import BUCKET_TTL, HOUR_TTL, bucket_label

    now = int(time.time())
    share = max(1, per_minute // len(TYPES))
    with conn.pipeline(transaction=False) as pipe:
        for minute in range(now // 60 - 7 * 60, now // 60 + 1):
            fields = {f"p:{q}": share for q in ("critical", "high", "default", "low")}
            fields.update({f"d:{t}:{bucket_label(0.02 * (i + 1) ** 2)}": share for i, t in enumerate(TYPES)})
            fields["f:default"] = max(1, per_minute // 10)
            pipe.hset(minute_bucket_key(minute), mapping=fields)  # type: ignore[arg-type]
            pipe.expire(minute_bucket_key(minute), BUCKET_TTL)
        for hour in range(now // 3600 - 7 * 24, now // 3600 + 1):
            fields = {f"p:{q}": share * 60 for q in ("critical", "high", "default", "low")}
            fields.update({f"d:{t}:{bucket_label(0.02 * (i + 1) ** 2)}": share * 60 for i, t in enumerate(TYPES)})
            fields["f:default"] = max(1, per_minute // 10) * 60
            pipe.hset(hour_bucket_key(hour), mapping=fields)  # type: ignore[arg-type]
            pipe.expire(hour_bucket_key(hour), HOUR_TTL)
        pipe.execute()


def register_workers(conn: redis.Redis, count: int = 8, busy: int = 3) -> None:
    """`count` registered RQ workers, `busy` of them with a running job's execution record."""
    from rq import Worker
    from rq.utils import utcformat

    for i in range(count):
        w = Worker(["critical", "high", "default", "low"], connection=conn, name=f"bench-worker-{i}")
        w.register_birth()
        w.set_state("busy" if i < busy else "idle")
        if i < busy:
            job = f"bench-{i + 1}"
            conn.hset(f"rq:job:{job}", mapping={"started_at": utcformat(datetime.now(UTC)), "origin": "default",
                                                 "description": "app.tasks.work(1, 2)"})
            conn.hset(f"rq:execution:{job}:e{i}", mapping={"created_at": time.time(), "last_heartbeat": time.time()})
            conn.sadd(f"rq:worker:{w.name}:executions", f"{job}:e{i}")


def sample_windows(engine: Engine, samples: int) -> dict[str, tuple[float, float]]:
    """p50/p95 (ms) of each window's read."""
    out = {}
    for window in WINDOWS:
        timings = []
        for _ in range(samples):
            start = time.perf_counter()
            engine.monitor.window_stats(window)
            timings.append((time.perf_counter() - start) * 1000)
        timings.sort()
        out[window] = (statistics.median(timings), timings[int(len(timings) * 0.95) - 1])
    return out


def postgres_percentiles(database_url: str, samples: int = 5) -> dict[str, float]:
    """Median ms of percentile_cont per type over each window's rows (the alternative to buckets)."""
    out = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for window, (span, _step) in WINDOWS.items():
            timings = []
            for _ in range(samples):
                start = time.perf_counter()
                conn.execute(PERCENTILES_SQL, {"span": span}).fetchall()  # type: ignore[arg-type]
                timings.append((time.perf_counter() - start) * 1000)
            out[window] = statistics.median(timings)
    return out


def fill(database_url: str, start: int, stop: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(FILL.replace("%(start)s", str(start)).replace("%(stop)s", str(stop)))  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE")


def sample(engine: Engine, samples: int) -> tuple[float, float]:
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        engine.monitor.snapshot(shared=False)  # the full computation, not the shared cached copy
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


async def drive_console(settings: Settings) -> dict[str, int]:
    """The console on live data, headless: refreshes, screens, paging through failures. Returns
    what it did (polls, failures loaded, groups shown, stuck jobs shown)."""
    from jobtui.app import JobTUI
    from jobtui.screens.failed import FailedScreen

    did = {"polls": 0, "failed_loaded": 0, "groups": 0, "stuck_rows": 0, "windows": 0}
    with Engine(settings, migrate=False) as engine:
        snapshot = engine.snapshot

        def counted_snapshot() -> Any:
            did["polls"] += 1
            return snapshot()

        engine.snapshot = counted_snapshot  # type: ignore[method-assign]
        app = JobTUI(engine, refresh=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(2.0)  # about ten refreshes on the dashboard
            for _ in WINDOWS:  # each chart window (6h, 24h, 7d, back to 1h)
                await pilot.press("w")
                await pilot.pause(0.4)
                did["windows"] += 1
            await pilot.press("2")
            await pilot.pause(0.5)
            for _ in range(10):  # ten more pages of 50 failures, loaded by keyset as the cursor reaches the end
                await pilot.press("end")
                await pilot.pause(0.3)
            failed = app.screen
            assert isinstance(failed, FailedScreen)
            did["failed_loaded"] = len(failed.pages.rows)
            await pilot.press("g")
            await pilot.pause(0.5)
            did["groups"] = len(failed.shown_groups())
            await pilot.press("g", "3")
            await pilot.pause(0.5)
            did["stuck_rows"] = app.screen.query_one("#stuck-table").row_count
            await pilot.press("1")
            await pilot.pause(1.0)
    return did


def console_run(redis_url: str, database_url: str) -> dict[str, float]:
    """What a process running only the console on this history did, and its peak resident
    memory (`rss_mb`: ru_maxrss of that process)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "bench.console_snapshot", "--console-child", "--redis-url",
                           redis_url, "--database-url", database_url], env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"the console run failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,1000000")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--console-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.console_child:
        did = asyncio.run(drive_console(Settings.load(env={}, redis_url=args.redis_url,
                                                      database_url=args.database_url)))
        print(json.dumps({**did, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    conn = redis.Redis.from_url(args.redis_url)
    conn.flushdb()
    results = []
    windows: list[dict[str, tuple[float, float]]] = []
    pg_windows: list[dict[str, float]] = []
    register_workers(conn)
    with scratch_database(args.pg_url) as database_url:
        settings = Settings.load(env={}, redis_url=args.redis_url, database_url=database_url)
        with Engine(settings) as engine:
            engine.dispatch_many([JobSpec(noop, priority=p) for p in ("critical", "high", "normal", "low")
                                  for _ in range(100)])
            filled = 0
            for size in sizes:
                fill(database_url, filled + 1, size)
                filled = size
                fill_buckets(conn, max(1, size // 10080))  # the history's rate: size jobs over a week
                sample(engine, 20)  # warm the pool, the plans and the page cache
                p50, p95 = sample(engine, args.samples)
                results.append((size, p50, p95))
                windows.append(sample_windows(engine, max(20, args.samples // 4)))
                pg_windows.append(postgres_percentiles(database_url))
        console = console_run(args.redis_url, database_url)
    conn.flushdb()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'history':>10} {'p50 ms':>8} {'p95 ms':>8}")
    for size, p50, p95 in results:
        print(f"{size:>10,} {p50:8.2f} {p95:8.2f}")
    if len(results) > 1:
        print(f"ratio p95 {results[-1][0]:,}/{results[0][0]:,}: {results[-1][2] / results[0][2]:.2f}")
    print(f"{'window':>10} " + " ".join(f"{f'{size:,} p50/p95 ms':>22}" for size, _, _ in results)
          + " " + " ".join(f"{f'percentile_cont {size:,}':>24}" for size, _, _ in results))
    for window in WINDOWS:
        cells = " ".join(f"{f'{w[window][0]:.2f} / {w[window][1]:.2f}':>22}" for w in windows)
        pg = " ".join(f"{f'{p[window]:.1f} ms':>24}" for p in pg_windows)
        print(f"{window:>10} {cells} {pg}")
    if len(windows) > 1:
        worst = max(windows[-1][w][1] / max(windows[0][w][1], 1e-6) for w in WINDOWS)
        print(f"windows: worst ratio p95 {results[-1][0]:,}/{results[0][0]:,}: {worst:.2f}")
    print(f"the console at {results[-1][0]:,} jobs ({console['polls']:.0f} snapshot reads, "
          f"{console['windows']:.0f} chart windows, "
          f"{console['failed_loaded']:,.0f} failures loaded, {console['groups']:.0f} groups, "
          f"{console['stuck_rows']:.0f} stuck jobs listed): peak resident memory {console['rss_mb']:.0f} MB")
    print(f"this bench process (fill and samples): peak resident memory {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
