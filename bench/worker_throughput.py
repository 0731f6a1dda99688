"""Worker throughput: bare RQ's SimpleWorker, our worker and huey (1 thread), same Redis, same run.

N jobs are queued first (not timed); each contender then drains them with one worker thread:
RQ's `SimpleWorker`; `jobtui`'s default worker with history on (events streamed to PostgreSQL by
its HistoryWriter thread, whose commands and round trips count; the run fails if any history
row is missing); huey's consumer with one worker thread. Each contender runs `--repeat` times,
interleaved; the median run (by durable rate) is reported.

- `--body noop` (default): a no-op job; `--body touch`: a small realistic job doing two Redis
  calls of its own (SETNX + INCR on its key, bench/jobs.py), the same function for everyone;
- default: the contenders run in this process; `--separate`: each in a worker process of its
  own, started and waiting before the clock starts (bench/contenders.py);
- worker done jobs/s: N / wall time from the first dequeue to the last job done;
- durable jobs/s (ours): N / wall time until the writer's final flush has put the last history
  row in PostgreSQL: what the product promises, so the ratios against bare RQ and huey (which
  keep no history) use it; `durable/done` says how far history trails the worker;
- commands/job: Redis `INFO` total_commands_processed delta / N (commands run by Lua scripts
  count, as Redis counts them; the measurement's own commands do not);
- round trips/job: client requests written to Redis / N, counted in the worker's process by
  wrapping redis-py's `send_packed_command` (one call per command or per whole pipeline);
- CPU (`--separate`, `--processes`; Linux): seconds of CPU per job of the worker processes (all
  their threads: the writer's too), of the Redis server and of the PostgreSQL backends serving
  the scratch database, sampled from /proc/<pid>/stat, and how many cores each kept busy.

`--processes 1,2,4` runs our worker in that many processes (each with its writer thread) and
prints the durable curve, where it flattens (the CPU of each part) and an estimate for a larger
machine. `--own-redis` starts a private redis-server for the run, so other clients of a shared
server cannot inflate the command counts.

    python -m bench.worker_throughput --jobs 4000 --own-redis
    python -m bench.worker_throughput --jobs 4000 --own-redis --separate --body touch
    python -m bench.worker_throughput --jobs 8000 --own-redis --processes 1,2,4
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from rq import Queue, SimpleWorker

from bench import jobs as bodies
from bench.common import commands_processed, parser, scratch_database
from bench.contenders import (
    Children,
    enqueue,
    huey_app,
    redis_pid,
    requests_so_far,
    reset,
    settings_for,
)
from bench.cpu import CpuSampler, pg_backends
from jobengine import Engine

__all__ = ["given_redis", "own_redis", "processes", "settings_for"]


@dataclass
class Run:
    name: str
    jobs: int
    seconds: float
    commands: int
    round_trips: int
    durable_seconds: float | None = None  # until the last history row was in PostgreSQL (ours)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds: workers, redis, postgres, machine

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def durable_rate(self) -> float:
        """Jobs/s until the history is in PostgreSQL (the worker-done rate when there is none)."""
        return self.jobs / (self.durable_seconds or self.seconds)

    @property
    def per_job(self) -> float:
        return self.commands / self.jobs

    @property
    def trips_per_job(self) -> float:
        return self.round_trips / self.jobs

    @property
    def wall(self) -> float:
        return self.durable_seconds or self.seconds


def measure(name: str, conn: redis.Redis, jobs: int, fn: Callable[[], object],
            after: Callable[[], object] | None = None) -> Run:
    """Time `fn` (worker done) and `fn` + `after` (history durable); count commands and round
    trips of both."""
    before = commands_processed(conn)
    trips = requests_so_far()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    durable = None
    if after is not None:
        after()
        durable = time.perf_counter() - start
    trips = requests_so_far() - trips - 1  # minus the probe
    return Run(name, jobs, seconds, commands_processed(conn) - before - 1, trips,  # minus this INFO
               durable_seconds=durable)


# ---- contenders in this process -------------------------------------------------------------

def bare_rq(conn: redis.Redis, redis_url: str, database_url: str, jobs: int, body: str) -> Run:
    reset(conn, database_url)
    enqueue("rq", redis_url, database_url, body, jobs)
    worker = SimpleWorker([Queue("default", connection=conn)], connection=conn)
    run = measure("bare RQ SimpleWorker", conn, jobs, lambda: worker.work(burst=True, logging_level="WARNING"))
    check_body(conn, body, jobs)
    return run


def ours(conn: redis.Redis, redis_url: str, database_url: str, jobs: int, body: str) -> Run:
    reset(conn, database_url)
    enqueue("ours", redis_url, database_url, body, jobs)
    with Engine(settings_for(redis_url, database_url), migrate=False) as engine:
        writer = engine.history_writer()
        worker = engine.worker()

        def run() -> None:
            writer.start()
            worker.work(burst=True, with_scheduler=True, logging_level="WARNING")

        result = measure(f"jobtui {type(worker).__name__} (+history)", conn, jobs, run,
                         after=lambda: writer.stop(flush=True))
    check_history(database_url, jobs)
    check_body(conn, body, jobs)
    return result


def huey(conn: redis.Redis, redis_url: str, database_url: str, jobs: int, body: str) -> Run:
    """huey's RedisHuey (BRPOP), a consumer with one worker thread."""
    from huey.consumer import Consumer
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

    reset(conn, database_url)
    enqueue("huey", redis_url, database_url, body, jobs)
    app, _ = huey_app(redis_url)
    done, count, lock = threading.Event(), [0], threading.Lock()

    @app.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)
    def finished(signal: str, task: object, *args: object) -> None:
        with lock:
            count[0] += 1
            if count[0] == jobs:
                done.set()

    consumer = Consumer(app, workers=1, worker_type="thread", periodic=False, check_worker_health=False)

    def run() -> None:
        consumer.start()
        done.wait()

    result = measure("huey (1 worker thread)", conn, jobs, run)
    consumer.stop(graceful=True)
    app.storage.pool.disconnect()
    check_body(conn, body, jobs)
    return result


def check_history(database_url: str, jobs: int) -> None:
    """Keep the comparison honest: every job's history reached PostgreSQL."""
    with psycopg.connect(database_url) as pg:
        row = pg.execute("SELECT (SELECT count(*) FROM jobs WHERE status = 'finished'), "
                         "(SELECT count(*) FROM job_logs WHERE kind = 'started')").fetchone()
    finished, started = row if row is not None else (0, 0)
    if finished != jobs or started != jobs:
        raise SystemExit(f"history mismatch: {finished} finished rows, {started} started events for {jobs} jobs")


def check_body(conn: redis.Redis, body: str, jobs: int) -> None:
    """The bodies really ran, once each (a sample of 20 jobs)."""
    if body == "touch":
        for n in random.sample(range(jobs), min(20, jobs)):
            if conn.get(f"bench:body:{n}:runs") != b"1":
                raise SystemExit(f"job {n}'s body did not run exactly once")


# ---- contenders in worker processes of their own -------------------------------------------------

NAMES = {"ours": "jobtui FastWorker (+history)", "rq": "bare RQ SimpleWorker", "huey": "huey (1 worker thread)"}


def separate(contender: str, conn: redis.Redis, redis_url: str, database_url: str, jobs: int, body: str,
             tmp: Path, n: int = 1) -> Run:
    """`n` worker processes of `contender` (ready before the clock) drain `jobs` jobs."""
    reset(conn, database_url)
    enqueue(contender, redis_url, database_url, body, jobs)
    children = Children(contender, n, redis_url, database_url, tmp, jobs=jobs)
    backends = pg_backends(database_url)
    sampler = CpuSampler({"redis": redis_pid(conn), "postgres": backends}).start()
    before = commands_processed(conn)
    start = children.go()
    reports = children.wait()
    commands = commands_processed(conn) - before - 2  # minus RPUSH go and this INFO
    used = sampler.stop()
    backends.close()  # type: ignore[attr-defined]
    ended, durable = max(r.ended for r in reports), max(r.durable for r in reports)
    if contender == "ours":
        check_history(database_url, jobs)
    check_body(conn, body, jobs)
    name = NAMES[contender] if n == 1 or contender != "ours" else f"jobtui, {n} processes"
    return Run(name, jobs, ended - start, commands, sum(r.round_trips for r in reports),
               durable - start if contender == "ours" else None,
               {"workers": sum(r.cpu for r in reports), **used, "machine": sampler.busy * (durable - start)
                / sampler.seconds})


def processes(conn: redis.Redis, redis_url: str, database_url: str, jobs: int, n: int, tmp: Path,
              body: str = "noop") -> Run:
    """Our worker in `n` processes (kept for bench.history_lag)."""
    return separate("ours", conn, redis_url, database_url, jobs, body, tmp, n)


# ---- set-up and report ------------------------------------------------------------------------

@contextmanager
def own_redis() -> Iterator[str]:
    """A private redis-server on a free port for the run (clean command counts)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--own-redis needs redis-server on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="jobtui-bench-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def given_redis(url: str) -> Iterator[str]:
    yield url


def median(runs: list[Run]) -> Run:
    """The run with the median durable rate (the worker-done rate for contenders without history)."""
    return sorted(runs, key=lambda r: r.durable_rate)[len(runs) // 2]


def table(runs: list[Run]) -> None:
    print(f"{'worker':30} {'jobs/s done':>11} {'durable':>8} {'dur/done':>8} {'cmds/job':>9} {'trips/job':>10}")
    for run in runs:
        durable = f"{run.durable_rate:8.0f} {run.durable_rate / run.rate:8.2f}" if run.durable_seconds is not None \
            else f"{'-':>8} {'-':>8}"
        print(f"{run.name:30} {run.rate:11.0f} {durable} {run.per_job:9.2f} {run.trips_per_job:10.3f}")


def cpu_table(runs: list[Run]) -> None:
    """CPU per job (µs) and cores kept busy, per part, over each run's wall time (until durable)."""
    if not any(r.cpu for r in runs):
        return
    print(f"CPU ({os.cpu_count()} cores; µs per job, cores busy over the run):")
    print(f"{'':30} {'workers':>16} {'Redis':>16} {'PostgreSQL':>16} {'machine':>16}")
    for run in runs:
        cells = [f"{run.cpu.get(k, 0) / run.jobs * 1e6:6.0f} µs {run.cpu.get(k, 0) / run.wall:4.2f} c"
                 for k in ("workers", "redis", "postgres", "machine")]
        print(f"{run.name:30} " + " ".join(f"{c:>16}" for c in cells))


def estimate(curve: dict[int, Run]) -> None:
    """Where the curve flattens on this machine, and what a larger one would do."""
    last = curve[max(curve)]
    per = {k: last.cpu.get(k, 0) / last.jobs * 1e6 for k in ("workers", "redis", "postgres")}
    total = sum(per.values())
    one = curve[min(curve)].durable_rate / min(curve)
    cores = os.cpu_count() or 1
    bound = cores * 1e6 / total if total else float("inf")
    print(f"per job at {max(curve)} processes: workers {per['workers']:.0f} µs, Redis {per['redis']:.0f} µs, "
          f"PostgreSQL {per['postgres']:.0f} µs = {total:.0f} µs of CPU; {cores} cores bound it at "
          f"{bound:,.0f} jobs/s (measured {last.durable_rate:,.0f})")
    if per["redis"] and total:
        redis_cap = 1e6 / per["redis"]
        for c in (8, 16, 32):
            rate = min(redis_cap, c * 1e6 / total)
            print(f"  estimate, {c} cores: {rate:,.0f} jobs/s durable with about {rate / one:.0f} worker processes "
                  f"({'Redis (one core) is the limit' if rate == redis_cap else 'CPU is the limit'}; "
                  f"Redis alone caps at {redis_cap:,.0f} jobs/s)")


def ratios(best: dict[str, Run], results: dict[str, list[Run]]) -> None:
    mine = best["ours"]
    print(f"ours durable / ours worker done: {mine.durable_rate / mine.rate:.2f}")
    print(f"ratio ours (durable)/RQ: {mine.durable_rate / best['rq'].rate:.2f}" +
          (f"  ours (durable)/huey: {mine.durable_rate / best['huey'].rate:.2f}" if "huey" in best else "") +
          "  (all runs, jobs/s durable: " + "; ".join(f"{k} {', '.join(f'{r.durable_rate:.0f}' for r in v)}"
                                                       for k, v in results.items() if v) + ")")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=3, help="Runs per contender (median reported).")
    p.add_argument("--body", choices=sorted(bodies.BODIES), default="noop")
    p.add_argument("--separate", action="store_true", help="Each contender in a worker process of its own.")
    p.add_argument("--processes", help="Comma-separated process counts, e.g. 1,2,4 (our worker only).")
    p.add_argument("--own-redis", action="store_true", help="Run against a private redis-server.")
    p.add_argument("--no-huey", action="store_true", help="Skip huey (not installed: pip install .[bench]).")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with (own_redis() if args.own_redis else given_redis(args.redis_url)) as redis_url, \
            scratch_database(args.pg_url) as database_url, tempfile.TemporaryDirectory() as folder:
        os.environ[bodies.BODY_REDIS] = redis_url
        tmp = Path(folder)
        Engine(settings_for(redis_url, database_url)).close()  # migrate once
        conn = redis.Redis.from_url(redis_url)
        print(f"{args.jobs} jobs, body {args.body}, " + (f"our worker in {args.processes} processes" if args.processes
              else "worker processes of their own" if args.separate else "in this process") +
              f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        if args.processes:
            counts = [int(n) for n in args.processes.split(",")]
            runs: dict[int, list[Run]] = {n: [] for n in counts}
            for _ in range(args.repeat):  # interleaved
                for n in counts:
                    runs[n].append(separate("ours", conn, redis_url, database_url, args.jobs, args.body, tmp, n))
            conn.flushdb()
            curve = {n: median(r) for n, r in runs.items()}
            table(list(curve.values()))
            cpu_table(list(curve.values()))
            base = curve[counts[0]].durable_rate
            print("durable scaling: " + ", ".join(f"{n}: x{curve[n].durable_rate / base:.2f}" for n in counts))
            estimate(curve)
            return
        contenders = ["rq", "ours"] + ([] if args.no_huey else ["huey"])
        results: dict[str, list[Run]] = {c: [] for c in contenders}
        inline = {"rq": bare_rq, "ours": ours, "huey": huey}
        for _ in range(args.repeat):
            for c in contenders:
                results[c].append(separate(c, conn, redis_url, database_url, args.jobs, args.body, tmp)
                                  if args.separate else inline[c](conn, redis_url, database_url, args.jobs, args.body))
        conn.flushdb()
    best = {k: median(v) for k, v in results.items() if v}
    table(list(best.values()))
    cpu_table(list(best.values()))
    ratios(best, results)


if __name__ == "__main__":
    main()
