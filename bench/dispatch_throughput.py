"""Bulk dispatch: `engine.dispatch_many(...)` (with its PostgreSQL history rows) vs bare RQ's
pipelined enqueue (`Queue.enqueue_many(..., pipeline=pipe)`), same Redis, same run.

N no-op jobs in batches of `--batch`; each side runs `--repeat` times, interleaved, the median
run is reported. jobs/s counts everything the call does (ours: validation, job hashes, the
`jobs` rows in PostgreSQL, the queue pushes); commands/job is Redis' `INFO`
total_commands_processed delta / N; round trips/job counts requests written to Redis (see
bench.worker_throughput). The run fails unless every job is queued and, for ours, has its row.

    python -m bench.dispatch_throughput --jobs 20000 --batch 500 --own-redis
"""

from __future__ import annotations

import logging

import psycopg
import redis
from rq import Queue

from bench.common import parser, scratch_database
from bench.worker_throughput import Run, given_redis, measure, median, own_redis, settings_for
from jobengine import Engine, JobSpec
from jobengine.demo import noop


def bare_rq(conn: redis.Redis, jobs: int, batch: int) -> Run:
    conn.flushdb()
    queue = Queue("default", connection=conn)

    def run() -> None:
        for start in range(0, jobs, batch):
            with conn.pipeline() as pipe:
                queue.enqueue_many([Queue.prepare_data(noop, result_ttl=500)
                                    for _ in range(min(batch, jobs - start))], pipeline=pipe)
                pipe.execute()

    result = measure("bare RQ enqueue_many (pipeline)", conn, jobs, run)
    if queue.count != jobs:
        raise SystemExit(f"RQ queued {queue.count} of {jobs}")
    return result


def ours(conn: redis.Redis, redis_url: str, database_url: str, jobs: int, batch: int) -> Run:
    conn.flushdb()
    with psycopg.connect(database_url, autocommit=True) as pg:
        pg.execute("TRUNCATE jobs, job_logs, failed_jobs")
    with Engine(settings_for(redis_url, database_url)) as engine:

        def run() -> None:
            for start in range(0, jobs, batch):
                engine.dispatch_many([JobSpec(noop, priority="normal") for _ in range(min(batch, jobs - start))])

        result = measure("jobtui dispatch_many (+PG rows)", conn, jobs, run)
        queued = Queue("default", connection=conn).count
    with psycopg.connect(database_url) as pg:
        rows = pg.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
    if queued != jobs or rows != jobs:
        raise SystemExit(f"ours queued {queued} and wrote {rows} rows of {jobs}")
    return result


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--batch", type=int, default=500, help="Jobs per dispatch_many / enqueue_many call.")
    p.add_argument("--repeat", type=int, default=3, help="Runs per side (median reported).")
    p.add_argument("--own-redis", action="store_true", help="Run against a private redis-server.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs: dict[str, list[Run]] = {"rq": [], "ours": []}
    with (own_redis() if args.own_redis else given_redis(args.redis_url)) as redis_url, \
            scratch_database(args.pg_url) as database_url:
        Engine(settings_for(redis_url, database_url)).close()  # migrate once
        conn = redis.Redis.from_url(redis_url)
        for _ in range(args.repeat):
            runs["rq"].append(bare_rq(conn, args.jobs, args.batch))
            runs["ours"].append(ours(conn, redis_url, database_url, args.jobs, args.batch))
        conn.flushdb()
    best = {k: median(v) for k, v in runs.items()}
    print(f"{'dispatch':34} {'jobs/s':>8} {'cmds/job':>9} {'trips/job':>10}")
    for run in best.values():
        print(f"{run.name:34} {run.rate:8.0f} {run.per_job:9.2f} {run.trips_per_job:10.3f}")
    print(f"ratio ours/RQ: {best['ours'].rate / best['rq'].rate:.2f}  (all runs, jobs/s: " +
          "; ".join(f"{k} {', '.join(f'{r.rate:.0f}' for r in v)}" for k, v in runs.items()) + ")")


if __name__ == "__main__":
    main()
