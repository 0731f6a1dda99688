"""`python -m jobtui.screenshots [--out screenshots/]`: SVGs of the console's main screens.

The pictures come from the real app (`JobTUI(engine)`) on a real engine, fed like this:

1. Servers: fresh embedded Redis and PostgreSQL in a temporary folder (removed afterwards), or
   `--redis-url` / `--database-url`, which must be empty (the run leaves its demo jobs there).
2. A deterministic demo mix (the functions of `jobengine.demo`, arguments and job ids from a
   seeded RNG, the functions' own randomness seeded too) runs through in-process burst workers
   on lanes without dispatch delays. Retries have no backoff and stop after two runs (one for
   `ResourceError`), so there are finished jobs, retried ones, and final failures in several
   exception groups.
3. What a short run cannot produce is simulated, in the engine's own formats: the hour before
   the run in the per-minute counters (`jobengine.metrics.record_metrics` with past
   timestamps), so the sparklines and the throughput chart have a shape; one job that has been
   `processing` for three hours (a QUEUED and a STARTED event through
   `engine.store.apply_events`, as if its worker had died); and one worker registered through
   RQ whose heartbeat stopped three minutes ago (a SIGKILLed worker whose key has not expired).
4. Then: jobs scheduled minutes ahead, a backlog on the `low` lane (over its size threshold, no
   worker takes it), and two real worker processes (`jobtui worker --name ...`), one of them
   busy with a long report.
5. Alerts: a webhook on 127.0.0.1 (apprise's `json://` URL, the engine's `[alerts] urls`) stands
   for the alert target. A test notice goes out while it answers 503 (a target that was down:
   recorded as not delivered), then one real alert round (`Alerter.run_once`) tells it what is
   wrong with the demo deployment.
6. The history is flushed to PostgreSQL and the console is driven with `App.run_test`.

Everything started here (worker processes, servers, the temporary folder) is stopped and
removed at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
from textual.worker import WorkerCancelled, WorkerFailed

from jobengine import keys
from jobengine.config import Settings
from jobengine.dispatch import JobSpec
from jobengine.engine import Engine
from jobengine.models import JobEvent
from jobengine.types import EventKind, Priority

LANES = {"critical": ("critical", 0.0), "high": ("high", 0.0), "normal": ("default", 0.0), "low": ("low", 0.0)}
WIDE = (120, 40)
SMALL = (80, 24)
BUSY_REPORT_SECONDS = 900.0
"""How long the report the busy worker runs takes (it is stopped with the workers)."""

# weight, function, type, priority: the demo's functions, with more payments than the demo
# producer sends so a short run has final failures of several kinds.
MIX: tuple[tuple[float, str, str, str], ...] = (
    (0.34, "jobengine.demo:charge_card", "payment", "critical"),
    (0.24, "jobengine.demo:send_email", "email", "high"),
    (0.18, "jobengine.demo:resize_image", "image", "normal"),
    (0.20, "jobengine.demo:sync_inventory", "inventory", "low"),
    (0.04, "jobengine.demo:build_report", "report", "normal"),
)
BATCH = 60
MAX_JOBS = 1200
HOURLY_RATE = {"critical": 40, "high": 60, "default": 75, "low": 50}
"""Jobs per minute each queue processed in the simulated hour before the run."""


@dataclass(frozen=True)
class Shot:
    name: str
    what: str


SHOTS = (
    Shot("dashboard", "Dashboard: health, lanes with sparklines, throughput, workers (one stale)"),
    Shot("failed", "Failed jobs, newest first, with the detail pane"),
    Shot("failed-grouped", "Failures grouped by exception and message fingerprint"),
    Shot("job-detail", "A job that was retried and then failed: attempts, retry strategy, traceback, log"),
    Shot("stuck", "A job processing for hours, with its worker and elapsed time"),
    Shot("alerts", "The last alert notices, newest first, with delivery and the highlighted one's body"),
    Shot("confirm-retry", "Three failures marked, R asks before retrying them"),
    Shot("help", "Every key, from the action table"),
    Shot("dashboard-80x24", "The dashboard in an 80x24 terminal"),
    Shot("dashboard-light", "The dashboard in the light theme"),
    Shot("lane-scheduled", "The lane view: a lane's scheduled jobs with their due times"),
    Shot("dashboard-paused", "A lane paused with P: who paused it and for how long"),
    Shot("bulk-retry", "R on a typed filter: every matching failure counted before the confirmation"),
)


def say(text: str) -> None:
    click.echo(text, err=True)


def job_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ---- demo data ---------------------------------------------------------------------------------

def demo_specs(rng: random.Random, start: int, n: int) -> list[JobSpec]:
    """Jobs `start` to `start + n` of MIX with seeded arguments and ids; reports are kept short."""
    specs = []
    for i in range(start, start + n):
        _, func, job_type, priority = rng.choices(MIX, weights=[m[0] for m in MIX])[0]
        args: tuple[object, ...]
        if job_type == "payment":
            args = (10_000 + i, rng.randint(100, 50_000))
        elif job_type == "email":
            args = (f"user{i}@example.com", rng.choice(["Welcome", "Invoice", "Password reset"]))
        elif job_type == "image":
            args = (i, rng.choice([320, 640, 1280]))
        elif job_type == "report":
            args = (i, round(rng.uniform(0.3, 0.8), 2))
        else:
            args = (i,)
        specs.append(JobSpec(func, args, type=job_type, priority=priority, job_id=job_uuid(rng)))
    return specs


def run_burst(engine: Engine, rounds: int = 50) -> None:
    """In-process burst workers (with the scheduler) until nothing is queued or due."""
    conn = engine.connection
    for _ in range(rounds):
        engine.worker(name="w-batch-2").work(
            burst=True, with_scheduler=True, logging_level="CRITICAL")
        now = time.time()
        pending = sum(conn.llen(keys.rq_queue_key(q)) for q in engine.settings.queues)
        due = sum(conn.zcount(keys.rq_scheduled_key(q), "-inf", now) for q in engine.settings.queues)
        if not pending and not due:
            return
        time.sleep(0.2)
    raise click.ClickException(f"the demo jobs did not settle after {rounds} burst rounds")


def backfill_hour(engine: Engine, rng: random.Random) -> None:
    """The hour before the run, in the per-minute counters the dashboard charts."""
    from jobengine.metrics import record_metrics

    types = {"critical": "payment", "high": "email", "default": "image", "low": "inventory"}
    now = time.time()
    with engine.connection.pipeline(transaction=False) as pipe:
        for minutes_ago in range(59, 0, -1):
            at = now - minutes_ago * 60
            for k, (queue, rate) in enumerate(HOURLY_RATE.items()):
                wave = 1 + 0.45 * math.sin((60 - minutes_ago) / 7 + k * 1.7)
                processed = max(0, round(rate * wave + rng.gauss(0, rate * 0.12)))
                failed = sum(1 for _ in range(processed) if rng.random() < 0.04)
                for _ in range(processed - failed):
                    record_metrics(pipe, EventKind.FINISHED, queue, {"type": types[queue]}, now=at)
                for _ in range(failed):
                    record_metrics(pipe, EventKind.FAILED, queue, {"type": types[queue], "error_class": "ValueError"},
                                   now=at)
        pipe.execute()


def stuck_job(engine: Engine, rng: random.Random) -> str:
    """A report that started three hours ago on a worker that is gone (history only)."""
    job_id = job_uuid(rng)
    started = datetime.now(UTC) - timedelta(hours=3, minutes=4)
    queued = started - timedelta(seconds=41)
    common: dict[str, Any] = {"job_id": job_id, "queue": "default", "type": "report", "priority": Priority.NORMAL,
                              "func": "jobengine.demo.build_report", "args": "4711, 5400.0"}
    engine.store.apply_events([
        JobEvent(f"{int(queued.timestamp() * 1000)}-0", EventKind.QUEUED, at=queued, **common),
        JobEvent(f"{int(started.timestamp() * 1000)}-0", EventKind.STARTED, at=started, attempt=1,
                 worker="w-batch-0", **common),
    ])
    return job_id


def dead_worker(engine: Engine) -> Any:
    """An RQ worker registration whose heartbeat stopped three minutes ago."""
    from rq import Worker
    from rq.utils import utcformat

    worker = Worker(["default", "low"], connection=engine.connection, name="w-batch-3")
    worker.register_birth()
    engine.connection.hset(worker.key, mapping={
        "state": "idle", "last_heartbeat": utcformat(datetime.now(UTC) - timedelta(minutes=3))})
    return worker


def start_workers(settings: Settings, names: list[str], queues: str) -> list[subprocess.Popen[bytes]]:
    from jobtui.cli.demo import _die_with_parent

    env = dict(os.environ, JOBENGINE_REDIS_URL=settings.redis_url or "",
               JOBENGINE_DATABASE_URL=settings.database_url or "")
    return [
        subprocess.Popen([sys.executable, "-m", "jobtui.cli", "worker", "--name", name, "--queues", queues],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=_die_with_parent)
        for name in names
    ]


class Webhook:
    """A local alert target: accepts apprise's JSON POSTs (answers `status`), keeps nothing."""

    def __init__(self) -> None:
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_alerts(engine: Engine, hook: Webhook) -> None:
    """A test notice the target refused, then one real round of alerts delivered to it."""
    alerter = engine.alerter()
    hook.status = 503
    alerter.send_test()
    hook.status = 200
    alerter.run_once(force=True)


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_mix(engine: Engine, rng: random.Random, jobs: int, min_failures: int) -> None:
    """At least `jobs` jobs of the mix, in batches, until there are `min_failures` final failures
    in three exception groups or more (the failures are random, seeded: how many jobs that takes
    depends on the seed and on how the engine's code draws from the RNG)."""
    done = 0
    while True:
        n = max(BATCH, jobs - done) if done == 0 else BATCH
        say(f"running demo jobs {done + 1}-{done + n} through burst workers…")
        engine.dispatch_many(demo_specs(rng, done, n))
        run_burst(engine)
        done += n
        engine.flush_history()
        groups = engine.failure_groups()
        if sum(g.count for g in groups) >= min_failures and len(groups) >= min(3, min_failures):
            return
        if done >= MAX_JOBS:
            say(f"only {sum(g.count for g in groups)} final failures after {done} jobs; going on")
            return


def prepare(engine: Engine, seed: int, jobs: int, min_failures: int, state: dict[str, Any]) -> None:
    """Fill the engine with the demo state; `state` gets what the shots and the clean-up need."""
    rng = random.Random(seed)
    random.seed(seed)  # the demo functions decide failures with the module-level RNG
    run_mix(engine, rng, jobs, min_failures)
    backfill_hour(engine, rng)
    stuck = stuck_job(engine, rng)
    later = [JobSpec("jobengine.demo:send_email", (f"digest{i}@example.com", "Digest"), type="email",
                     priority=rng.choice(["high", "normal", "low"]), delay=rng.randint(10, 50) * 60,
                     job_id=job_uuid(rng)) for i in range(14)]
    backlog = [JobSpec("jobengine.demo:sync_inventory", (5000 + i,), type="inventory", priority="low",
                       job_id=job_uuid(rng)) for i in range(38)]
    report_id = job_uuid(rng)
    report = JobSpec("jobengine.demo:build_report", (90210, BUSY_REPORT_SECONDS), type="report",
                     priority="normal", job_id=report_id)
    engine.dispatch_many([*backlog, report])
    engine.dispatch_many(later)  # on its own: a batch with a delayed job before an immediate one fails
    state["ghost"] = dead_worker(engine)
    say("starting two worker processes…")
    state["procs"] = start_workers(engine.settings, ["w-api-1", "w-batch-1"], "critical,high,default")
    from rq.job import Job

    wait_for(lambda: Job.fetch(report_id, connection=engine.connection).get_status() == "started",
             "a worker to start the long report")
    wait_for(lambda: any(w.current_job for w in engine.monitor.workers()), "the busy worker to show its job")
    engine.flush_history()
    send_alerts(engine, state["hook"])
    failed = engine.failed_jobs(200)
    retried = [f for f in failed if f.attempts > 1]
    state["detail"] = (retried or failed)[0].job_id if failed else stuck
    state["failed"] = len(failed)


# ---- driving the console --------------------------------------------------------------------------

async def _settle(pilot: Any, rounds: int = 3) -> None:
    for _ in range(rounds):
        # a failed poll shows as a banner (the shot says so); a cancelled one was replaced by a newer
        with contextlib.suppress(WorkerFailed, WorkerCancelled):
            await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.05)


async def _shoot(pilot: Any, out: Path, name: str) -> None:
    await _settle(pilot)
    pilot.app.clear_notifications()
    await pilot.pause(0.1)
    pilot.app.save_screenshot(f"{name}.svg", str(out))
    what = next(s.what for s in SHOTS if s.name == name)
    say(f"  {out / (name + '.svg')}: {what}")


async def drive(engine: Engine, out: Path, detail_job: str) -> None:
    from jobtui.app import JobTUI

    app = JobTUI(engine)
    async with app.run_test(size=WIDE) as pilot:
        await _settle(pilot)
        await _shoot(pilot, out, "dashboard")
        await pilot.press("2")
        await _shoot(pilot, out, "failed")
        await pilot.press("g")
        await _shoot(pilot, out, "failed-grouped")
        await pilot.press("g", "j", *detail_job[:8], "enter")
        await _shoot(pilot, out, "job-detail")
        await pilot.press("3")
        await _shoot(pilot, out, "stuck")
        await pilot.press("5", "down")
        await _shoot(pilot, out, "alerts")
        await pilot.press("2", "home", "space", "space", "space", "R")
        await _shoot(pilot, out, "confirm-retry")
        await pilot.press("n", "escape", "question_mark")
        await _shoot(pilot, out, "help")
        await pilot.press("escape", "1")
        app.theme = "textual-light"
        await _shoot(pilot, out, "dashboard-light")
        app.theme = "textual-dark"
        await lanes_and_bulk(engine, app, pilot, out)
    app = JobTUI(engine)
    async with app.run_test(size=SMALL) as pilot:
        await _shoot(pilot, out, "dashboard-80x24")


async def lanes_and_bulk(engine: Engine, app: Any, pilot: Any, out: Path) -> None:
    """The lane view, a paused lane and the bulk dialog (the pause is undone after its shot)."""
    from jobtui.screens.bulk import BulkScreen

    app.open_lane("default", "scheduled")
    await _shoot(pilot, out, "lane-scheduled")
    await pilot.press("escape")
    engine.pause("low", reason="inventory API down")
    app.poll_now()
    await _shoot(pilot, out, "dashboard-paused")
    engine.resume("low")
    groups = engine.failure_groups()
    typed = f"error:{groups[0].error_class.rsplit('.', 1)[-1]} since:1h" if groups else "since:1h"
    await pilot.press("2", "slash", *(c if c != " " else "space" for c in typed), "enter")
    await _settle(pilot)
    await pilot.press("R")
    for _ in range(100):
        if isinstance(app.screen, BulkScreen) and app.screen.phase == "ask":
            break
        await pilot.pause(0.05)
    await _shoot(pilot, out, "bulk-retry")
    await pilot.press("n", "escape")


# ---- servers and clean-up ---------------------------------------------------------------------------

@contextlib.contextmanager
def servers(redis_url: str | None, database_url: str | None) -> Iterator[tuple[str, str]]:
    """The given URLs, or fresh embedded servers in a temporary folder removed afterwards."""
    if redis_url and database_url:
        yield redis_url, database_url
        return
    if redis_url or database_url:
        raise click.UsageError("give both --redis-url and --database-url, or neither (embedded servers)")
    from jobengine.embedded import EmbeddedServers

    folder = tempfile.mkdtemp(prefix="jobtui-screenshots-")
    say(f"starting embedded Redis and PostgreSQL in {folder}…")
    embedded = EmbeddedServers(folder)
    try:
        embedded.start()
        yield embedded.redis_url, embedded.database_url
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


def stop(procs: list[subprocess.Popen[bytes]], engine: Engine, ghost: Any) -> None:
    from rq import Worker

    from jobtui.cli.demo import stop_workers

    stop_workers(procs, grace=2.0)
    with contextlib.suppress(Exception):
        for worker in Worker.all(connection=engine.connection):
            worker.register_death()  # a killed worker leaves its key; do not leave it behind
    with contextlib.suppress(Exception):
        ghost.register_death()


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("screenshots"),
              show_default=True, help="Folder for the SVGs.")
@click.option("--redis-url", help="An EMPTY Redis database to use instead of the embedded server.")
@click.option("--database-url", help="An EMPTY PostgreSQL database to use instead of the embedded server.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the demo mix.")
@click.option("--jobs", type=click.IntRange(20, 5000), default=240, show_default=True,
              help="Demo jobs to run at least.")
@click.option("--min-failures", type=click.IntRange(0, 100), default=8, show_default=True,
              help="Run more jobs (batches of 60, up to 1,200) until this many final failures.")
def main(out: Path, redis_url: str | None, database_url: str | None, seed: int, jobs: int,
         min_failures: int) -> None:
    """Take SVG screenshots of every main screen of the console, from the real app on demo data."""
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("jobengine").setLevel(logging.ERROR)  # e.g. the backlog's size warning
    hook = Webhook()
    with servers(redis_url, database_url) as (r_url, pg_url):
        settings = Settings.load(env={}, redis_url=r_url, database_url=pg_url, lanes=dict(LANES),
                                 alert_urls=(hook.url,),
                                 retry_params={"exponential": {"base": 0, "jitter": 0, "max_attempts": 2},
                                               "linear": {"step": 0, "max_attempts": 1}},
                                 limits={"critical": 600, "high": 300},
                                 queue_size={"low": 25, "default": 500})
        engine = Engine(settings)
        state: dict[str, Any] = {"procs": [], "ghost": None, "hook": hook}
        try:
            if engine.connection.dbsize() or engine.store.stats_by_status_type():
                raise click.UsageError("the Redis and PostgreSQL databases must be empty (the run adds demo jobs)")
            prepare(engine, seed, jobs, min_failures, state)
            say(f"{state['failed']} final failures; taking screenshots…")
            asyncio.run(drive(engine, out, state["detail"]))
        finally:
            stop(state["procs"], engine, state["ghost"])
            engine.close()
            hook.close()
    say(f"wrote {len(SHOTS)} screenshots to {out}/")


if __name__ == "__main__":
    main()
