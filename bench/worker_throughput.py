"""Worker throughput: bare RQ's SimpleWorker, our worker and huey (1 thread), same Redis, same run.

N no-op jobs are queued first (not timed); each contender then drains them in this process with
one thread: RQ's `SimpleWorker`; `jobtui`'s default worker with history on (events streamed to
PostgreSQL by the HistoryWriter thread, whose commands and round trips count; the run fails if
any history row is missing); huey's RedisHuey consumer with one worker thread. Each contender
runs `--repeat` times, interleaved; the median run is reported.

- jobs/s: N / wall time from the first dequeue to the last job done ("worker done");
- durable jobs/s (ours): N / wall time from the first dequeue until the writer's final flush has
  put the last history row in PostgreSQL ("history durable"): what the product promises, so the
  ratios against bare RQ and huey (which keep no history) use it;
- commands/job: Redis `INFO` total_commands_processed delta / N (commands run by Lua scripts
  count, as Redis counts them; the measurement's own INFO calls do not);
- round trips/job: client requests written to Redis / N, counted in this process by wrapping
  redis-py's `send_packed_command` (one call per command or per whole pipeline/MULTI block).

`--processes 1,2,4` runs our worker in that many processes instead (each with its writer
thread), started and waiting before the clock starts, and prints the scaling curve.
`--own-redis` starts a private redis-server for the run, so other clients of a shared server
cannot inflate the command counts.

    python -m bench.worker_throughput --jobs 2000 --own-redis
    python -m bench.worker_throughput --jobs 4000 --own-redis --processes 1,2,4
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
import redis.connection
from rq import Queue, SimpleWorker

from bench.common import commands_processed, parser, scratch_database
from jobengine import Engine, JobSpec, Settings
from jobengine.demo import noop

LANES = {"critical": ("critical", 0.0), "high": ("high", 0.0), "normal": ("default", 0.0), "low": ("low", 0.0)}
_requests = itertools.count()
_send = redis.connection.AbstractConnection.send_packed_command


def _counting_send(self: redis.connection.AbstractConnection, command: object, check_health: bool = True) -> None:
    next(_requests)
    _send(self, command, check_health)


redis.connection.AbstractConnection.send_packed_command = _counting_send  # type: ignore[method-assign]


def requests_so_far() -> int:
    """Requests written to Redis by this process so far (a round trip each)."""
    return next(_requests)  # the probe itself adds one; callers subtract deltas, so it cancels out


@dataclass
class Run:
    name: str
    jobs: int
    seconds: float
    commands: int
    round_trips: int
    redis_cpu: float = 0.0  # seconds of Redis server CPU (processes mode)
    worker_cpu: float = 0.0  # seconds of CPU of the worker processes (processes mode)
    machine_cpu: float = 0.0  # seconds of CPU used by the whole machine (processes mode, Linux)
    durable_seconds: float | None = None  # until the last history row was in PostgreSQL (ours)

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


def settings_for(redis_url: str, database_url: str) -> Settings:
    return Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(LANES))


# ---- contenders -------------------------------------------------------------------------------

def bare_rq(conn: redis.Redis, jobs: int) -> Run:
    conn.flushdb()
    queue = Queue("default", connection=conn)
    queue.enqueue_many([Queue.prepare_data(noop, result_ttl=500) for _ in range(jobs)])
    worker = SimpleWorker([queue], connection=conn)
    return measure("bare RQ SimpleWorker", conn, jobs, lambda: worker.work(burst=True, logging_level="WARNING"))


def ours(conn: redis.Redis, redis_url: str, database_url: str, jobs: int) -> Run:
    conn.flushdb()
    with psycopg.connect(database_url, autocommit=True) as pg:
        pg.execute("TRUNCATE jobs, job_logs, failed_jobs")
    with Engine(settings_for(redis_url, database_url)) as engine:
        engine.dispatch_many([JobSpec(noop, priority="normal") for _ in range(jobs)])
        writer = engine.history_writer()
        worker = engine.worker()

        def run() -> None:
            writer.start()
            worker.work(burst=True, with_scheduler=True, logging_level="WARNING")

        result = measure(f"jobtui {type(worker).__name__} (+history)", conn, jobs, run,
                         after=lambda: writer.stop(flush=True))
    check_history(database_url, jobs)
    return result


def check_history(database_url: str, jobs: int) -> None:
    """Keep the comparison honest: every job's history reached PostgreSQL."""
    with psycopg.connect(database_url) as pg:
        finished = pg.execute("SELECT count(*) FROM jobs WHERE status = 'finished'").fetchone()[0]
        started = pg.execute("SELECT count(*) FROM job_logs WHERE kind = 'started'").fetchone()[0]
    if finished != jobs or started != jobs:
        raise SystemExit(f"history mismatch: {finished} finished rows, {started} started events for {jobs} jobs")


def huey_noop() -> None:
    return None


def huey(conn: redis.Redis, redis_url: str, jobs: int) -> Run:
    """huey's RedisHuey (BRPOP), a no-op task, a consumer with one worker thread."""
    from huey import RedisHuey
    from huey.consumer import Consumer
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

    conn.flushdb()
    app = RedisHuey("jobtui-bench", url=redis_url)
    task = app.task()(huey_noop)
    for _ in range(jobs):
        task()
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
    return result


# ---- processes mode ---------------------------------------------------------------------------

def child(args: argparse.Namespace) -> None:
    """One worker process of `--processes`: ready, wait for the start signal, drain, report."""
    logging.basicConfig(level=logging.WARNING)
    conn = redis.Redis.from_url(args.redis_url)
    with Engine(settings_for(args.redis_url, args.database_url), migrate=False) as engine:
        writer = engine.history_writer()
        worker = engine.worker()
        conn.rpush("bench:ready", worker.name)
        conn.blpop(["bench:go"], timeout=120)
        trips, cpu = requests_so_far(), time.process_time()
        writer.start()
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        ended, cpu = time.time(), time.process_time() - cpu
        writer.stop(flush=True)
        durable = time.time()
        trips = requests_so_far() - trips - 1
    Path(args.report).write_text(json.dumps({"ended": ended, "durable": durable, "round_trips": trips,
                                             "cpu": cpu}))


def machine_cpu() -> float:
    """CPU seconds the machine has spent busy so far (every process: workers, Redis, PostgreSQL);
    0 where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def redis_cpu(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def processes(conn: redis.Redis, redis_url: str, database_url: str, jobs: int, n: int, tmp: Path) -> Run:
    conn.flushdb()
    with psycopg.connect(database_url, autocommit=True) as pg:
        pg.execute("TRUNCATE jobs, job_logs, failed_jobs")
    with Engine(settings_for(redis_url, database_url)) as engine:
        engine.dispatch_many([JobSpec(noop, priority="normal") for _ in range(jobs)])
    reports = [tmp / f"report-{n}-{i}.json" for i in range(n)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    argv = [sys.executable, "-m", "bench.worker_throughput", "--child", "--redis-url", redis_url,
            "--database-url", database_url]
    children = [subprocess.Popen([*argv, "--report", str(r)], env=env) for r in reports]
    while conn.llen("bench:ready") < n:
        time.sleep(0.05)
    before, cpu, busy = commands_processed(conn), redis_cpu(conn), machine_cpu()
    start = time.time()
    conn.rpush("bench:go", *range(n))
    if any(c.wait(timeout=600) for c in children):
        raise SystemExit("a worker process failed")
    data = [json.loads(r.read_text()) for r in reports]
    commands = commands_processed(conn) - before - 3  # minus RPUSH and the two INFO
    ended = max(d["ended"] for d in data)
    cpu, busy = redis_cpu(conn) - cpu, (machine_cpu() - busy) * (ended - start) / (time.time() - start)
    check_history(database_url, jobs)
    return Run(f"{n} process(es)", jobs, ended - start, commands, sum(d["round_trips"] for d in data), cpu,
               sum(d["cpu"] for d in data), busy, max(d["durable"] for d in data) - start)


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


def median(runs: list[Run]) -> Run:
    """The run with the median durable rate (the worker-done rate for contenders without history)."""
    return sorted(runs, key=lambda r: r.durable_rate)[len(runs) // 2]


def table(runs: list[Run]) -> None:
    print(f"{'worker':34} {'jobs/s done':>11} {'durable':>8} {'cmds/job':>9} {'trips/job':>10}")
    for run in runs:
        durable = f"{run.durable_rate:8.0f}" if run.durable_seconds is not None else f"{'-':>8}"
        print(f"{run.name:34} {run.rate:11.0f} {durable} {run.per_job:9.2f} {run.trips_per_job:10.3f}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3, help="Runs per contender (median reported).")
    p.add_argument("--processes", help="Comma-separated process counts, e.g. 1,2,4 (our worker only).")
    p.add_argument("--own-redis", action="store_true", help="Run against a private redis-server.")
    p.add_argument("--no-huey", action="store_true", help="Skip huey (not installed: pip install .[bench]).")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    logging.basicConfig(level=logging.WARNING)
    with (own_redis() if args.own_redis else given_redis(args.redis_url)) as redis_url, \
            scratch_database(args.pg_url) as database_url:
        Engine(settings_for(redis_url, database_url)).close()  # migrate once
        conn = redis.Redis.from_url(redis_url)
        if args.processes:
            counts = [int(n) for n in args.processes.split(",")]
            with tempfile.TemporaryDirectory() as tmp:
                curve = {n: median([processes(conn, redis_url, database_url, args.jobs, n, Path(tmp))
                                    for _ in range(args.repeat)]) for n in counts}
            conn.flushdb()
            table(list(curve.values()))
            base = curve[counts[0]].durable_rate
            print("durable scaling: " + ", ".join(f"{n}: x{curve[n].durable_rate / base:.2f}" for n in counts))
            print(f"CPU while draining ({os.cpu_count()} cores): " + "; ".join(
                f"{n}: workers {r.worker_cpu / r.seconds:.2f} cores, Redis {r.redis_cpu / r.seconds:.2f} cores, "
                f"machine {r.machine_cpu / r.seconds:.2f} cores busy"
                for n, r in curve.items()))
            return
        results: dict[str, list[Run]] = {"rq": [], "ours": [], "huey": []}
        for _ in range(args.repeat):
            results["rq"].append(bare_rq(conn, args.jobs))
            results["ours"].append(ours(conn, redis_url, database_url, args.jobs))
            if not args.no_huey:
                results["huey"].append(huey(conn, redis_url, args.jobs))
        conn.flushdb()
    best = {k: median(v) for k, v in results.items() if v}
    table(list(best.values()))
    mine = best["ours"]
    print(f"ours durable / ours worker done: {mine.durable_rate / mine.rate:.2f}")
    print(f"ratio ours (durable)/RQ: {mine.durable_rate / best['rq'].rate:.2f}" +
          (f"  ours (durable)/huey: {mine.durable_rate / best['huey'].rate:.2f}" if "huey" in best else "") +
          "  (all runs, jobs/s durable: " + "; ".join(f"{k} {', '.join(f'{r.durable_rate:.0f}' for r in v)}"
                                                       for k, v in results.items() if v) + ")")


@contextmanager
def given_redis(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
