"""`jobtui demo`: embedded servers, worker processes, a producer, then the console.

Demo settings shorten the lane delays (high 1 s, normal 3 s, low 10 s) and the thresholds
(long-running 2 s, stuck after 45 s) so everything the console can show appears within a
minute. They are written to `<data dir>/jobtui.toml`, where `jobtui --data-dir DIR health`,
`stats` and a second console find them (config lookup: jobengine.config). Quitting stops the
producer, the workers and the embedded servers it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobengine.config import CONFIG_NAME, Settings
from jobtui.cli.context import Context, checked, friendly, pass_ctx

if TYPE_CHECKING:
    from jobengine.demo import Producer
    from jobengine.engine import Engine

DEMO_LANES = {"critical": ("critical", 0.0), "high": ("high", 1.0), "normal": ("default", 3.0),
              "low": ("low", 10.0)}


def _die_with_parent() -> None:
    """Child processes get SIGKILL if the demo dies without cleaning up (Linux)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_workers(settings: Settings, count: int) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, JOBENGINE_REDIS_URL=settings.redis_url or "",
               JOBENGINE_DATABASE_URL=settings.database_url or "",
               JOBENGINE_LONG_RUNNING=str(settings.long_running),
               JOBENGINE_STUCK_AFTER=str(settings.stuck_after))
    argv = [sys.executable, "-m", "jobtui.cli", "worker"]
    log = open(os.path.join(settings.data_dir or ".", "demo-workers.log"), "ab")  # noqa: SIM115
    return [subprocess.Popen(argv, env=env, stdout=log, stderr=log, preexec_fn=_die_with_parent)
            for _ in range(count)]


def stop_workers(workers: list[subprocess.Popen[bytes]], grace: float = 3.0) -> None:
    """SIGTERM (finish the current job), then SIGKILL whatever is still running after `grace`."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for w in workers:
        try:
            w.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def demo_settings(settings: Settings) -> Settings:
    return replace(settings, lanes=dict(DEMO_LANES), long_running=2.0, stuck_after=45.0,
                   failed_per_hour=max(settings.failed_per_hour, 200))


DEMO_MARK = "jobtui:demo"  # in the embedded Redis: its data was made by a demo
CONFIG_HEADER = "# Written by `jobtui demo`"


def write_demo_config(settings: Settings, *, embedded: bool) -> Path | None:
    """The demo's settings as `<data dir>/jobtui.toml` (the server URLs too when they were
    configured rather than embedded; then readable by the owner only). A file there that the
    demo did not write is left alone (None)."""
    if not settings.data_dir:
        return None
    path = Path(settings.data_dir).expanduser() / CONFIG_NAME
    if path.exists() and not path.read_text(encoding="utf-8", errors="replace").startswith(CONFIG_HEADER):
        click.echo(f"jobtui demo: {path} was not written by a demo; it is kept (the demo's thresholds are not "
                   "in it)", err=True)
        return None
    lines = [f"{CONFIG_HEADER}: its settings, so `jobtui --data-dir {settings.data_dir} health`, `stats` and",
             "# another console agree with the demo's. Rewritten by each demo; delete it to use the defaults.", ""]
    if not embedded:
        lines += [f"[redis]\nurl = {json.dumps(settings.redis_url)}\n",
                  f"[database]\nurl = {json.dumps(settings.database_url)}\n"]
    lines += ["[thresholds]", f"long_running = {settings.long_running!r}", f"stuck_after = {settings.stuck_after!r}",
              f"failed_per_hour = {settings.failed_per_hour}", ""]
    for lane, (queue, delay) in settings.lanes.items():
        lines += [f"[lanes.{lane}]", f"queue = {json.dumps(queue)}", f"delay = {float(delay)!r}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    if not embedded:
        path.chmod(0o600)
    return path


def fresh_start(engine: Engine, users: int) -> bool:
    """Clear what an earlier demo left on the embedded servers (its backlog, its stuck job, its
    history), so every demo starts on empty lanes. Never data a demo did not make, and never
    while another process uses the servers (`users` > 1). True if the demo starts clean."""
    conn = engine.connection
    if users > 1:
        return False
    if not conn.exists(DEMO_MARK) and (conn.dbsize() or engine.store.has_history()):
        click.echo("jobtui demo: the embedded servers hold data no demo made; it is kept", err=True)
        return False
    conn.flushdb()
    engine.store.clear_history()
    conn.set(DEMO_MARK, "1")
    # A new Redis epoch for the emptied servers: what the demo cleared is not a reset to reconcile
    engine.store.record_redis_epoch(engine.reconciler().ensure_epoch(), replace=True)
    return True


@click.command()
@click.option("--rate", default=3.0, show_default=True, callback=checked("number", 0, 10_000, lo_open=True),
              help="Jobs per second to produce.")
@click.option("--workers", "n_workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--headless", is_flag=True, help="Print live counts instead of opening the console.")
@click.option("--seconds", callback=checked("number", 0, 366 * 86400, lo_open=True),
              help="Stop after this many seconds (headless).")
@pass_ctx
@friendly
def demo(ctx: Context, rate: float, n_workers: int, headless: bool, seconds: float | None) -> None:
    """Embedded servers, workers and a producer of a realistic mix; then the console."""
    run_demo(ctx.settings(), rate=rate, workers=n_workers, headless=headless, seconds=seconds)


def run_demo(settings: Settings, *, rate: float, workers: int, headless: bool,
             seconds: float | None) -> None:
    from jobengine.demo import Producer
    from jobengine.embedded import resolve
    from jobengine.engine import Engine

    settings, embedded = resolve(demo_settings(settings))
    if embedded is not None and settings.data_dir is None:
        settings = replace(settings, data_dir=str(embedded.data_dir))
    engine = Engine(settings, embedded=None)
    if embedded is not None:  # servers the user configured are never cleared
        fresh_start(engine, len(embedded.users()))
    written = write_demo_config(settings, embedded=embedded is not None)
    if written is not None:
        click.echo(f"jobtui demo: settings in {written}; `jobtui --data-dir {settings.data_dir} health` reads them",
                   err=True)
    procs = start_workers(settings, workers)
    # The producer is the demo's application, not an operator: a read-only demo console still sees jobs.
    producing = engine if settings.allows("dispatch") else \
        Engine(replace(settings, read_only=False, permissions=None), embedded=None, migrate=False)
    producer = Producer(producing, rate=rate)
    producer.start()
    app: Any = None

    def hang_up(signum: int, _frame: Any) -> None:
        """A dropped SSH session (SIGHUP) or SIGTERM still cleans up everything we started."""
        if app is not None:
            app.exit()
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, hang_up) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        if headless:
            _print_counts(engine, producer, seconds)
        else:
            from jobtui.app import JobTUI

            app = JobTUI(engine, refresh=settings.refresh, read_only=settings.read_only)
            app.run()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        producer.stop()
        stop_workers(procs)
        if producing is not engine:
            producing.close()
        engine.close()
        if embedded is not None:
            embedded.stop()


def _print_counts(engine: Engine, producer: Producer, seconds: float | None) -> None:
    start = time.monotonic()
    while seconds is None or time.monotonic() - start < seconds:
        stats: list[Any] = engine.monitor.queue_stats()
        line = "  ".join(f"{q.name}: {q.size} waiting {q.scheduled} sched {q.running} run {q.failed} failed"
                         for q in stats)
        click.echo(f"dispatched {producer.dispatched:5d} | {line}")
        time.sleep(1.0)


COMMANDS = (demo,)
