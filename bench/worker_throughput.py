"""Worker throughput: N no-op jobs through bare RQ's SimpleWorker and through our worker.

Same Redis, same run, jobs queued first, one process, one thread. Ours runs with history on
(events buffered in Redis and written to PostgreSQL by the writer thread, whose commands are
counted). Prints jobs/s, Redis commands per job, and the ratio ours/bare.

    python bench/worker_throughput.py --jobs 2000
"""

from __future__ import annotations

import logging

import psycopg
import redis
from rq import Queue, SimpleWorker

from bench.common import Run, measure, parser, scratch_database
from jobengine import Engine, JobSpec, Settings
from jobengine.demo import noop


def bare_rq(conn: redis.Redis, jobs: int) -> Run:
    conn.flushdb()
    queue = Queue("default", connection=conn)
    queue.enqueue_many([Queue.prepare_data(noop, result_ttl=500) for _ in range(jobs)])
    worker = SimpleWorker([queue], connection=conn)
    return measure("bare RQ SimpleWorker", conn, jobs, lambda: worker.work(burst=True, logging_level="WARNING"))


def ours(conn: redis.Redis, redis_url: str, database_url: str, jobs: int) -> Run:
    conn.flushdb()
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                             lanes={"critical": ("critical", 0.0), "high": ("high", 0.0),
                                    "normal": ("default", 0.0), "low": ("low", 0.0)})
    with Engine(settings) as engine:
        engine.dispatch_many([JobSpec(noop, priority="normal") for _ in range(jobs)])
        writer = engine.history_writer()
        worker = engine.worker()

        def run() -> None:
            writer.start()
            worker.work(burst=True, logging_level="WARNING")

        result = measure("jobtui worker (+history)", conn, jobs, run, after=lambda: writer.stop(flush=True))
    with psycopg.connect(database_url) as pg:  # keep the comparison honest: all history landed
        finished = pg.execute("SELECT count(*) FROM jobs WHERE status = 'finished'").fetchone()[0]
    if finished != jobs:
        raise SystemExit(f"history mismatch: {finished} finished rows for {jobs} jobs")
    return result


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    conn = redis.Redis.from_url(args.redis_url)
    with scratch_database(args.pg_url) as database_url:
        bare = bare_rq(conn, args.jobs)
        mine = ours(conn, args.redis_url, database_url, args.jobs)
    conn.flushdb()
    print(f"{'worker':28} {'jobs/s':>9} {'cmds/job':>9}")
    for run in (bare, mine):
        print(f"{run.name:28} {run.rate:9.0f} {run.per_job:9.1f}")
    print(f"ratio ours/bare RQ: {mine.rate / bare.rate:.2f}  "
          f"(commands per job {mine.per_job:.1f} vs {bare.per_job:.1f})")


if __name__ == "__main__":
    main()
