"""`jobtui worker`: a headless worker (or a pool of them), with optional metrics and pruning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from jobengine import validate as v
from jobtui.cli.context import Context, checked, duration, fail, friendly, pass_ctx

if TYPE_CHECKING:
    from jobengine.engine import Engine


@click.command()
@click.option("--queues", help="Comma-separated queues in priority order (default: all lanes).")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty (and no job is due within --burst-wait).")
@click.option("--burst-wait", default=10.0, show_default=True, callback=checked("number", 0, 3600),
              help="With --burst: seconds to wait for scheduled jobs coming due before quitting.")
@click.option("--processes", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--fork", is_flag=True, help="Fork a work horse per job (isolation, slower).")
@click.option("--classic", is_flag=True, help="RQ's SimpleWorker loop (one job per dequeue, RQ's own bookkeeping).")
@click.option("--name", callback=checked("text", max_len=v.MAX_QUEUE), help="Worker name (default: RQ's random name).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--prune-every", help="Prune history this often (e.g. 1h); one worker of the deployment at a time.")
@pass_ctx
@friendly
def worker(ctx: Context, queues: str | None, burst: bool, burst_wait: float, processes: int, fork: bool,
           classic: bool, name: str | None, metrics_port: int | None, prune_every: str | None) -> None:
    """Run a headless worker: lanes in priority order, scheduler included."""
    queue_list = None
    if queues is not None:
        settings = ctx.settings()
        queue_list = [v.queue_name(q.strip(), "--queues", settings.known_queues) for q in queues.split(",")]
    every = duration(prune_every, "--prune-every")
    if every is not None and ctx.settings().read_only:
        fail("--prune-every refused: the engine is in read-only mode (prune is an operator action)")
    if processes > 1:
        _run_worker_pool(ctx, processes, queue_list, burst, fork, metrics_port,
                         (["--prune-every", prune_every] if prune_every else []) + (["--classic"] if classic else [])
                         + (["--burst-wait", f"{burst_wait:g}"] if burst else []))
        return

    def stop_during_start(signum: int, frame: object) -> None:  # the worker installs its own handler
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_during_start)  # a SIGTERM while starting still cleans up
    with ctx.engine() as engine:
        writer = engine.history_writer()
        writer.start()
        stop_extras: Callable[[], None] | None = None
        try:
            stop_extras = start_worker_extras(engine, metrics_port, every)
            w = engine.worker(queue_list, fork=fork, classic=classic, name=name)
            click.echo(f"worker {w.name} on {', '.join(w.queue_names())} (pid {os.getpid()})", err=True)
            w.work(burst=burst, with_scheduler=True, logging_level="WARNING")
            while burst and _wait_for_due(engine, w.queue_names(), burst_wait):
                w = engine.worker(queue_list, fork=fork, classic=classic, name=name)
                w.work(burst=True, with_scheduler=True, logging_level="WARNING")
        finally:
            if stop_extras is not None:
                stop_extras()
            writer.stop(flush=True)


def _wait_for_due(engine: Engine, queues: list[str], wait: float) -> bool:
    """After a burst: True (once due) when a scheduled job comes due within `wait` seconds; else
    say how many are scheduled and when the next is due, and return False."""
    count, due = engine.monitor.next_scheduled(queues)
    if not count or due is None:
        return False
    delay = (due - datetime.now(UTC)).total_seconds()
    if delay > wait:
        click.echo(f"burst done: {count} job(s) scheduled, the next due at {due.astimezone():%H:%M:%S} "
                   f"(in {describe(delay)}), later than --burst-wait {wait:g}s", err=True)
        return False
    click.echo(f"waiting {max(0.0, delay):.1f}s for {count} scheduled job(s) coming due", err=True)
    time.sleep(max(0.0, delay) + 0.05)  # RQ keeps whole seconds: the job is due once this passes
    return True


def describe(seconds: float) -> str:
    """'45s', '4m 3s', '2h 5m', '3d 1h'."""
    total = int(seconds)
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if total >= size:
            rest = (total % size) // small_size
            return f"{total // size}{unit}" + (f" {rest}{small}" if rest else "")
    return f"{total}s"


def start_worker_extras(engine: Engine, metrics_port: int | None, prune_every: float | None) -> Callable[[], None]:
    """`--metrics-port` / `--prune-every`, the `[alerts]` timer and the reconcile check after a
    Redis reset (`[worker] reconcile_every`): start them; returns a function stopping them."""
    from jobengine.exporter import serve
    from jobengine.prune import DEFAULT_KEEP_FAILED, DEFAULT_OLDER_THAN, PruneTimer
    from jobengine.reconcile import ReconcileTimer

    server = timer = reconciling = None
    alerts = _alert_timer(engine)
    if engine.settings.reconcile_every > 0:
        reconciling = ReconcileTimer(engine.reconciler(), engine.settings.reconcile_every)
        reconciling.start()
    if metrics_port:
        try:
            server = serve(engine.connection, engine.settings, metrics_port)
        except OSError as exc:
            fail(f"--metrics-port {metrics_port}: cannot listen ({exc.strerror})")
    if prune_every:
        timer = PruneTimer(engine.pruner(), prune_every, DEFAULT_OLDER_THAN, DEFAULT_KEEP_FAILED)
        timer.start()

    def stop() -> None:
        if reconciling is not None:
            reconciling.stop()
        if alerts is not None:
            alerts.stop()
        if timer is not None:
            timer.stop()
        if server is not None:
            server.shutdown()

    return stop


def _alert_timer(engine: Engine) -> Any:
    """`[alerts]`: every worker evaluates alerts every `check_every` seconds (a Redis lock and gate
    make it one round for the deployment); none without URLs or with `enabled = false`."""
    from jobengine.alerts import AlertTimer

    if not (engine.settings.alerts_enabled and engine.settings.alert_urls):
        return None
    alerter = engine.alerter()
    alerter.notifier  # noqa: B018 - a ${VAR} missing from the environment stops the worker here, named
    timer = AlertTimer(alerter)
    timer.start()
    return timer


def _run_worker_pool(ctx: Context, processes: int, queues: list[str] | None, burst: bool,
                     fork: bool, metrics_port: int | None = None, extra: list[str] | None = None) -> None:
    """N worker processes sharing the resolved servers; SIGTERM/SIGINT reach every one.
    The parent serves `metrics_port` (deployment-wide metrics); children get `extra` flags."""
    from jobengine.connection import redis_from_url
    from jobengine.embedded import resolve
    from jobengine.exporter import serve

    settings, embedded = resolve(ctx.settings())
    if metrics_port:
        try:
            serve(redis_from_url(settings.redis_url or ""), settings, metrics_port)
        except OSError as exc:
            fail(f"--metrics-port {metrics_port}: cannot listen ({exc.strerror})")
    env = dict(os.environ, JOBENGINE_REDIS_URL=settings.redis_url or "",
               JOBENGINE_DATABASE_URL=settings.database_url or "")
    argv = [sys.executable, "-m", "jobtui.cli"]
    if ctx.config:
        argv += ["--config", ctx.config]
    argv += ["worker"] + (["--queues", ",".join(queues)] if queues else []) + \
        (["--burst"] if burst else []) + (["--fork"] if fork else []) + (extra or [])
    children = [subprocess.Popen(argv, env=env) for _ in range(processes)]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        codes = [child.wait() for child in children]
    finally:
        if embedded is not None:
            embedded.stop()
    if any(codes):
        sys.exit(1)


COMMANDS = (worker,)
