"""Rate-limit accuracy: W worker processes against a limit of L jobs per minute on one queue.

A backlog larger than the limit can drain is queued first; each job records when it started.
Over `--seconds` from the first start (whole minutes: with a backlog a moving window admits in
a pattern that repeats every 60 s, so only whole minutes measure it without bias), the observed
rate (jobs started per minute) is compared with L: the error must stay within 3%. It also
prints the busiest 60 s by admission time, read from the limiter's own window while the run
goes on (it must not exceed L: the limit holds across processes), and the deferrals.

    python -m bench.ratelimit_accuracy                       # 4 workers, 600/min, 120 s
    python -m bench.ratelimit_accuracy --strategy limits     # the `limits` library instead
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from bisect import bisect_left

import redis

from bench.common import parser, scratch_database
from jobengine import Engine, JobSpec, Settings
from jobengine.ratelimit import STRATEGIES, RateLimiter

STARTS = "bench:ratelimit:starts"
QUEUE = "default"
LANES = {"critical": ("critical", 0.0), "high": ("high", 0.0), "normal": (QUEUE, 0.0), "low": ("low", 0.0)}
_conn: redis.Redis | None = None


def mark() -> None:
    """The benchmark's job: record its start time (and optionally take some time)."""
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    _conn.rpush(STARTS, repr(time.time()))
    pause = float(os.environ.get("BENCH_JOB_SECONDS") or 0)
    if pause:
        time.sleep(pause)


def settings_for(args: argparse.Namespace, database_url: str) -> Settings:
    return Settings.load(env={}, redis_url=args.redis_url, database_url=database_url, lanes=dict(LANES),
                         limits={QUEUE: args.limit})


def run_worker(args: argparse.Namespace) -> None:
    """One worker process (started by the benchmark itself with --role worker)."""
    settings = settings_for(args, args.database_url)
    with Engine(settings, migrate=False) as engine:
        worker = engine.worker([QUEUE])
        worker.configure(settings, engine.policy, RateLimiter(engine.connection, settings.limits,
                                                                strategy=args.strategy))
        worker.work(with_scheduler=True, logging_level="WARNING")


def admissions(conn: redis.Redis, strategy: str, limit: int) -> set[tuple[str, float]]:
    """The hits currently in the limiter's window (member, server time)."""
    if strategy == "limits":  # a list of client timestamps, newest first
        raw = conn.lrange(f"jobengine:limits:LIMITER/{QUEUE}/{limit}/1/minute", 0, -1)
        return {(t.decode(), float(t)) for t in raw}
    return {(m.decode(), score) for m, score in conn.zrange(f"jobengine:ratelimit:window:{QUEUE}", 0, -1,
                                                             withscores=True)}


def busiest_minute(starts: list[float]) -> int:
    """The most jobs started within any 60 s."""
    return max((bisect_left(starts, t + 60.0) - i for i, t in enumerate(starts)), default=0)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=600, help="jobs per minute (L)")
    p.add_argument("--seconds", type=float, default=120.0, help="measurement length")
    p.add_argument("--workers", type=int, default=4, help="worker processes")
    p.add_argument("--strategy", choices=STRATEGIES, default="moving-window")
    p.add_argument("--job-seconds", type=float, default=0.0, help="time each job takes")
    p.add_argument("--role", choices=("bench", "worker"), default="bench", help=argparse.SUPPRESS)
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.role == "worker":
        run_worker(args)
        return
    if args.seconds < 60 or args.seconds % 60:
        p.error("--seconds must be a whole number of minutes (60, 120, ...)")
    conn = redis.Redis.from_url(args.redis_url)
    conn.flushdb()
    backlog = int(args.limit * (args.seconds / 60 + 1) * 1.25) + 50
    with scratch_database(args.pg_url) as database_url:
        with Engine(settings_for(args, database_url)) as engine:
            engine.dispatch_many([JobSpec("bench.ratelimit_accuracy:mark", type="bench") for _ in range(backlog)])
        env = dict(os.environ, BENCH_REDIS_URL=args.redis_url, BENCH_JOB_SECONDS=str(args.job_seconds))
        argv = [sys.executable, "-m", "bench.ratelimit_accuracy", "--role", "worker", "--redis-url", args.redis_url,
                "--database-url", database_url, "--limit", str(args.limit), "--strategy", args.strategy]
        workers = [subprocess.Popen(argv, env=env) for _ in range(args.workers)]
        try:
            deadline = time.time() + 60
            while not conn.llen(STARTS):
                if time.time() > deadline or any(w.poll() is not None for w in workers):
                    raise SystemExit("workers did not start any job")
                time.sleep(0.05)
            first = float(conn.lindex(STARTS, 0) or 0)
            admitted: set[tuple[str, float]] = set()
            while time.time() < first + args.seconds + 2:  # the window keeps 60 s: sample often
                admitted |= admissions(conn, args.strategy, args.limit)
                time.sleep(min(5.0, max(0.0, first + args.seconds + 2 - time.time())))
            admitted |= admissions(conn, args.strategy, args.limit)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()
    starts = sorted(float(t) for t in conn.lrange(STARTS, 0, -1))
    t0 = starts[0]
    started = sum(1 for t in starts if t0 <= t < t0 + args.seconds)
    rate = started / (args.seconds / 60)
    error = (rate - args.limit) / args.limit
    deferred = int(conn.hget("jobengine:metrics:deferred", QUEUE) or 0)
    hits = sorted(t for _, t in admitted)
    peak = busiest_minute(hits)
    conn.flushdb()
    print(f"strategy {args.strategy}: {args.workers} workers, limit {args.limit}/min, {args.seconds:g} s, "
          f"backlog {backlog} jobs of {args.job_seconds:g} s")
    print(f"jobs started in the {args.seconds:g} s after the first: {started} -> observed {rate:.1f}/min, "
          f"error {error:+.2%} against the limit")
    print(f"busiest 60 s: {peak} admissions (limit {args.limit}; {len(hits)} admissions seen), "
          f"{busiest_minute(starts)} job starts; deferrals: {deferred}")
    ok = abs(error) <= 0.03 and peak <= args.limit
    print("PASS: within 3% and never over the limit" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
