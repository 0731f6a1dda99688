"""`jobtui`: the console, the headless worker and the operator commands.

Every expected failure (bad input, bad config, unreachable server) is one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from jobengine.config import Settings
from jobengine.errors import JobEngineError

EXIT_BAD_INPUT = 2


def _fail(message: str) -> None:
    click.echo(f"jobtui: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one line and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobEngineError as exc:
            _fail(str(exc))

    return wrapper


class Context:
    """Global options, turned into Settings and an Engine on demand."""

    def __init__(self, config: str | None, overrides: dict[str, Any]) -> None:
        self.config = config
        self.overrides = overrides

    def settings(self, **more: Any) -> Settings:
        return Settings.load(self.config, **{**self.overrides, **more})

    def engine(self, **more: Any) -> Any:
        from jobengine.engine import Engine

        return Engine.from_settings(self.settings(**more))


pass_ctx = click.make_pass_decorator(Context)


@click.group(invoke_without_command=True)
@click.option("--config", "config", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--redis-url", help="Redis URL (default: embedded Redis).")
@click.option("--database-url", help="PostgreSQL URL (default: embedded PostgreSQL).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder of the embedded servers.")
@click.option("--read-only", is_flag=True, default=None, help="Refuse retry and cancel.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.version_option(package_name="jobtui")
@click.pass_context
def cli(ctx: click.Context, config: str | None, redis_url: str | None, database_url: str | None,
        data_dir: str | None, read_only: bool | None, verbose: bool) -> None:
    """jobtui: priority job queues on RQ, Redis and PostgreSQL, and a console to steer them.

    With no command, opens the console.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("rq", "pgserver"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = Context(config, {"redis_url": redis_url, "database_url": database_url,
                               "data_dir": data_dir, "read_only": read_only})
    if ctx.invoked_subcommand is None:
        ctx.invoke(console)


@cli.command()
@click.option("--refresh", type=float, help="Seconds between refreshes (default 1).")
@pass_ctx
@friendly
def console(ctx: Context, refresh: float | None) -> None:
    """Open the console."""
    from jobtui.app import JobTUI

    engine = ctx.engine(refresh=refresh)
    try:
        JobTUI(engine, refresh=engine.settings.refresh, read_only=engine.read_only).run()
    finally:
        engine.close()


@cli.command()
@pass_ctx
@friendly
def migrate(ctx: Context) -> None:
    """Apply the PostgreSQL migrations (also done on start)."""
    engine = ctx.engine()
    try:
        applied = engine.store.migrate()
        click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    finally:
        engine.close()


@cli.command()
@click.argument("function")
@click.argument("args", nargs=-1)
@click.option("--priority", default="normal", show_default=True, help="critical, high, normal or low.")
@click.option("--type", "job_type", help="Job type (default: the function's name).")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@pass_ctx
@friendly
def dispatch(ctx: Context, function: str, args: tuple[str, ...], priority: str, job_type: str | None,
             kwargs_json: str) -> None:
    """Dispatch FUNCTION (package.module:function) with ARGS, each a JSON value."""
    values = [_json_arg(a, f"argument {i + 1}") for i, a in enumerate(args)]
    kwargs = _json_arg(kwargs_json, "--kwargs")
    if not isinstance(kwargs, dict):
        _fail("--kwargs must be a JSON object, e.g. '{\"retries\": 3}'")
    settings = ctx.settings()
    settings.lane(priority)  # validate before starting anything
    engine = ctx.engine()
    try:
        click.echo(engine.dispatch(function, *values, type=job_type, priority=priority, **kwargs))
    finally:
        engine.close()


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{what} is not valid JSON ({exc.msg}): {text!r}; quote strings as '\"text\"'")


@cli.command()
@click.option("--queues", help="Comma-separated queues in priority order (default: all lanes).")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--fork", is_flag=True, help="Fork a work horse per job (isolation, slower).")
@click.option("--classic", is_flag=True, help="RQ's SimpleWorker loop (one job per dequeue, RQ's own bookkeeping).")
@click.option("--name", help="Worker name (default: RQ's random name).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--prune-every", help="Prune history this often (e.g. 1h); one worker of the deployment at a time.")
@pass_ctx
@friendly
def worker(ctx: Context, queues: str | None, burst: bool, processes: int, fork: bool, classic: bool,
           name: str | None, metrics_port: int | None, prune_every: str | None) -> None:
    """Run a headless worker: lanes in priority order, scheduler included."""
    from jobengine.cli_ops import start_worker_extras
    from jobengine.prune import parse_duration

    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    try:
        every = parse_duration(prune_every) if prune_every else None
    except ValueError as exc:
        _fail(f"--prune-every: {exc}")
    if processes > 1:
        _run_worker_pool(ctx, processes, queue_list, burst, fork, metrics_port,
                         (["--prune-every", prune_every] if prune_every else []) + (["--classic"] if classic else []))
        return
    import signal

    def stop_during_start(signum: int, frame: object) -> None:  # the worker installs its own handler
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_during_start)  # a SIGTERM while starting still cleans up
    engine = ctx.engine()
    writer = engine.history_writer()
    writer.start()
    stop_extras: Callable[[], None] | None = None
    try:
        stop_extras = start_worker_extras(engine, metrics_port, every)
        w = engine.worker(queue_list, fork=fork, classic=classic, name=name)
        click.echo(f"worker {w.name} on {', '.join(w.queue_names())} (pid {os.getpid()})", err=True)
        w.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    finally:
        if stop_extras is not None:
            stop_extras()
        writer.stop(flush=True)
        engine.close()


def _run_worker_pool(ctx: Context, processes: int, queues: list[str] | None, burst: bool,
                     fork: bool, metrics_port: int | None = None, extra: list[str] | None = None) -> None:
    """N worker processes sharing the resolved servers; SIGTERM/SIGINT reach every one.
    The parent serves `metrics_port` (deployment-wide metrics); children get `extra` flags."""
    import redis

    from jobengine.embedded import resolve
    from jobengine.metrics import serve

    settings, embedded = resolve(ctx.settings())
    if metrics_port:
        try:
            serve(redis.Redis.from_url(settings.redis_url or ""), settings, metrics_port)
        except OSError as exc:
            _fail(f"--metrics-port {metrics_port}: cannot listen ({exc.strerror})")
    env = dict(os.environ, JOBENGINE_REDIS_URL=settings.redis_url or "",
               JOBENGINE_DATABASE_URL=settings.database_url or "")
    argv = [sys.executable, "-m", "jobengine.cli"]
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def health(ctx: Context, as_json: bool) -> None:
    """Exit 0 healthy (warnings included), 1 failing, 2 cannot check (fit for an exec probe).

    Fails on too many failures in the last hour or stuck jobs (named); warns on queues over
    their size threshold and workers whose heartbeat is overdue (named); reports whether Redis
    and PostgreSQL answer. Runs every check now (migrations are not applied).
    """
    from jobengine.engine import Engine

    try:
        engine = Engine.from_settings(ctx.settings(), migrate=False)
    except JobEngineError as exc:
        _emit_health({"verdict": "unknown", "reasons": [str(exc)], "exit_code": 2}, as_json)
        sys.exit(2)
    try:
        report = engine.health()
    finally:
        engine.close()
    _emit_health({"verdict": report.verdict, "exit_code": report.exit_code, "reasons": list(report.reasons),
                  "checked_at": report.checked_at.isoformat(timespec="seconds"),
                  "redis_ok": report.redis_ok, "postgres_ok": report.postgres_ok,
                  "failures_last_hour": report.failures_last_hour,
                  "stuck_jobs": list(report.stuck_jobs), "workers": report.workers}, as_json)
    sys.exit(report.exit_code)


def _emit_health(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(data["verdict"].upper())
    for reason in data["reasons"]:
        click.echo(f"  - {reason}")
    if "redis_ok" in data:
        click.echo(f"  Redis {'answers' if data['redis_ok'] else 'is unreachable'}, PostgreSQL "
                   f"{'answers' if data['postgres_ok'] else 'is unreachable'}; {data['workers']} worker(s).")


@cli.command()
@click.option("--rate", type=float, default=3.0, show_default=True, help="Jobs per second to produce.")
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--headless", is_flag=True, help="Print live counts instead of opening the console.")
@click.option("--seconds", type=float, help="Stop after this many seconds (headless).")
@pass_ctx
@friendly
def demo(ctx: Context, rate: float, n_workers: int, headless: bool, seconds: float | None) -> None:
    """Embedded servers, workers and a producer of a realistic mix; then the console."""
    from jobengine.rundemo import run_demo

    run_demo(ctx.settings(), rate=rate, workers=n_workers, headless=headless, seconds=seconds)


from jobengine.cli_ops import OPS_COMMANDS  # noqa: E402  limit, metrics, prune, stats (after the group exists)

for _command in OPS_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="jobtui")


if __name__ == "__main__":
    main()

