"""The worker benchmarks' contenders, each in worker processes of its own started before the clock.

- `ours`: `jobtui`'s default worker (FastWorker) with its history writer thread, as `jobtui
  worker` runs it; it reports "worker done" (its last job ended) and "history durable" (its
  writer's final flush returned: every row in PostgreSQL);
- `rq`: bare RQ's SimpleWorker (no history);
- `huey`: huey's consumer with one worker thread (no history; `PriorityRedisHuey` when a run
  needs priorities).

A child (`python -m bench.contenders --child ...`) builds its worker, says it is ready
(`bench:ready`), waits for `bench:go`, drains (`--jobs N`: until N ran; RQ and ours until their
queues are empty) or serves until SIGTERM (`--serve`), then writes a JSON report: times (epoch
seconds), its own CPU seconds (every thread) and its Redis requests (round trips). Importing
this module counts the Redis requests this process writes (`requests_so_far`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
import redis.connection

from bench import jobs as bodies
from jobengine import Engine, JobSpec, Settings

LANES = {"critical": ("critical", 0.0), "high": ("high", 0.0), "normal": ("default", 0.0), "low": ("low", 0.0)}
QUEUES = ["critical", "high", "default", "low"]  # RQ's and huey's lanes, in priority order
HUEY_PRIORITY = {"critical": 30, "high": 20, "normal": 10, "low": 0}
_requests = itertools.count()
_send = redis.connection.AbstractConnection.send_packed_command


def _counting_send(self: redis.connection.AbstractConnection, command: object, check_health: bool = True) -> None:
    next(_requests)
    _send(self, command, check_health)


redis.connection.AbstractConnection.send_packed_command = _counting_send  # type: ignore[method-assign]


def requests_so_far() -> int:
    """Requests written to Redis by this process so far (a round trip each)."""
    return next(_requests)  # the probe itself adds one; callers subtract deltas, so it cancels out


def settings_for(redis_url: str, database_url: str) -> Settings:
    return Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(LANES))


def huey_app(redis_url: str, priority: bool = False) -> Any:
    """The bench's huey instance with its tasks registered (the same names in every process)."""
    from huey import PriorityRedisHuey, RedisHuey

    app = (PriorityRedisHuey if priority else RedisHuey)("jobtui-bench", url=redis_url)
    tasks = {name: app.task(name=name)(fn) for name, fn in
             {**bodies.BODIES, "stamp": bodies.stamp}.items()}
    return app, tasks


# ---- producing ----------------------------------------------------------------------------------

def enqueue(contender: str, redis_url: str, database_url: str, body: str, count: int,
            priority: str = "normal") -> None:
    """`count` jobs of `body` (argument: their number), not timed."""
    fn = bodies.BODIES[body]
    if contender == "ours":
        with Engine(settings_for(redis_url, database_url), migrate=False) as engine:
            for start in range(0, count, 5000):
                engine.dispatch_many([JobSpec(fn, (n,), priority=priority)
                                      for n in range(start, min(count, start + 5000))])
    elif contender == "rq":
        from rq import Queue

        queue = Queue(LANES[priority][0], connection=redis.Redis.from_url(redis_url))
        for start in range(0, count, 5000):
            queue.enqueue_many([Queue.prepare_data(fn, (n,), result_ttl=500)
                                for n in range(start, min(count, start + 5000))])
    else:
        app, tasks = huey_app(redis_url, priority=priority != "normal")
        for n in range(count):
            tasks[body](n, priority=HUEY_PRIORITY[priority]) if priority != "normal" else tasks[body](n)
        app.storage.pool.disconnect()


def reset(conn: redis.Redis, database_url: str) -> None:
    conn.flushdb()
    with psycopg.connect(database_url, autocommit=True) as pg:
        pg.execute("TRUNCATE jobs, job_logs, failed_jobs")


# ---- the worker processes -----------------------------------------------------------------------

@dataclass
class Report:
    """What one child measured: epoch seconds, its CPU seconds and Redis requests."""

    go: float
    ended: float
    durable: float
    cpu: float
    round_trips: int
    pid: int


def _ready_and_wait(conn: redis.Redis, name: str) -> None:
    conn.rpush("bench:ready", name)
    conn.blpop(["bench:go"], timeout=300)


def _child_ours(args: argparse.Namespace, conn: redis.Redis) -> tuple[float, float]:
    with Engine(settings_for(args.redis_url, args.database_url), migrate=False) as engine:
        writer = engine.history_writer()
        worker = engine.worker()
        _ready_and_wait(conn, worker.name)
        _mark(args)
        writer.start(interval=0.05 if args.serve else 0.5)
        worker.work(burst=not args.serve, with_scheduler=True, logging_level="WARNING")
        ended = time.time()
        writer.stop(flush=True)
        return ended, time.time()


def _child_rq(args: argparse.Namespace, conn: redis.Redis) -> tuple[float, float]:
    from rq import Queue, SimpleWorker

    worker = SimpleWorker([Queue(q, connection=conn) for q in QUEUES], connection=conn)
    _ready_and_wait(conn, worker.name)
    _mark(args)
    worker.work(burst=not args.serve, logging_level="WARNING")
    ended = time.time()
    return ended, ended


def _child_huey(args: argparse.Namespace, conn: redis.Redis) -> tuple[float, float]:
    from huey.consumer import Consumer
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

    app, _ = huey_app(args.redis_url, priority=args.priority)
    done, count, lock = threading.Event(), [0], threading.Lock()

    @app.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)
    def finished(signal_name: str, task: object, *rest: object) -> None:
        with lock:
            count[0] += 1
            if count[0] == args.jobs:
                done.set()

    consumer = Consumer(app, workers=1, worker_type="thread", periodic=False, check_worker_health=False)
    _ready_and_wait(conn, "huey")
    _mark(args)
    consumer.start()
    if args.serve:  # after start(): the consumer installs handlers of its own
        signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    ended = time.time()
    consumer.stop(graceful=True)
    return ended, ended


def _mark(args: argparse.Namespace) -> None:
    args.go, args.cpu0, args.trips0 = time.time(), time.process_time(), requests_so_far()


def child(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    conn = redis.Redis.from_url(args.redis_url)
    run = {"ours": _child_ours, "rq": _child_rq, "huey": _child_huey}[args.child]
    ended, durable = run(args, conn)
    report = Report(args.go, ended, durable, time.process_time() - args.cpu0,
                    requests_so_far() - args.trips0 - 1, os.getpid())
    Path(args.report).write_text(json.dumps(report.__dict__))


class Children:
    """`n` worker processes of one contender, ready (waiting for the go) when made."""

    def __init__(self, contender: str, n: int, redis_url: str, database_url: str, folder: Path, *,
                 jobs: int = 0, serve: bool = False, priority: bool = False) -> None:
        self.conn = redis.Redis.from_url(redis_url)
        self.reports = [folder / f"{contender}-{n}-{i}-{time.monotonic_ns()}.json" for i in range(n)]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        env[bodies.BODY_REDIS] = redis_url
        argv = [sys.executable, "-m", "bench.contenders", "--child", contender, "--redis-url", redis_url,
                "--database-url", database_url, "--jobs", str(jobs)]
        argv += ["--serve"] if serve else []
        argv += ["--priority"] if priority else []
        self.procs = [subprocess.Popen([*argv, "--report", str(r)], env=env) for r in self.reports]
        deadline = time.monotonic() + 120
        while self.conn.llen("bench:ready") < n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.kill()
                raise SystemExit(f"{contender}: a worker process did not start")
            time.sleep(0.02)
        self.conn.delete("bench:ready")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def go(self) -> float:
        start = time.time()
        self.conn.rpush("bench:go", *range(len(self.procs)))
        return start

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 900) -> list[Report]:
        if any(p.wait(timeout=timeout) for p in self.procs):
            raise SystemExit("a worker process failed")
        return [Report(**json.loads(r.read_text())) for r in self.reports]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()


def redis_pid(conn: redis.Redis) -> Callable[[], Sequence[int]]:
    pid = int(conn.info("server")["process_id"])
    return lambda: [pid]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=["ours", "rq", "huey"], required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--serve", action="store_true")
    p.add_argument("--priority", action="store_true")
    p.add_argument("--report", required=True)
    child(p.parse_args())


if __name__ == "__main__":
    main()
