"""Operator commands: `health`, `migrate`, `limit`, `metrics`, `prune`, `stats`.

Like every command, bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import click

from jobengine import validate as v
from jobengine.errors import JobEngineError
from jobengine.prune import DEFAULT_OLDER_THAN, describe_duration
from jobtui.cli.context import Context, checked, duration, fail, friendly, pass_ctx, settings_guard

# ---- health, migrate ------------------------------------------------------------------------------

@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def health(ctx: Context, as_json: bool) -> None:
    """Exit 0 healthy (warnings included), 1 failing, 2 cannot check (fit for an exec probe).

    Fails on PostgreSQL unreachable, too many failures in the last hour, stuck jobs (named) or
    history far behind; warns on history behind, dead letters, queues over their size threshold,
    workers whose heartbeat is overdue (named) and a schema not applied yet (a fresh deployment);
    cannot check without Redis. Runs every check now (migrations are not applied).
    """
    try:
        engine = ctx.engine(migrate=False)
    except JobEngineError as exc:
        _emit_health({"verdict": "unknown", "reasons": [str(exc)], "exit_code": 2}, as_json)
        sys.exit(2)
    with engine:
        report = engine.health()
    _emit_health({"verdict": report.verdict, "exit_code": report.exit_code, "reasons": list(report.reasons),
                  "checked_at": report.checked_at.isoformat(timespec="seconds"),
                  "redis_ok": report.redis_ok, "postgres_ok": report.postgres_ok,
                  "failures_last_hour": report.failures_last_hour,
                  "stuck_jobs": list(report.stuck_jobs), "workers": report.workers,
                  "history_backlog": report.history_backlog, "history_lag": report.history_lag,
                  "dead_letters": report.dead_letters}, as_json)
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


@click.command()
@pass_ctx
@friendly
def migrate(ctx: Context) -> None:
    """Apply the PostgreSQL migrations (also done on start); says which, or that none was pending."""
    with ctx.engine(migrate=False) as engine:  # here PostgreSQL down is the error, not a warning
        applied = engine.store.migrate()
        done, _pending = engine.store.migration_state()
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)} ({len(done)} applied in all)")
    else:
        click.echo(f"up to date ({len(done)} applied)")


# ---- limit ----------------------------------------------------------------------------------------

@click.command(context_settings={"ignore_unknown_options": True})  # "-3" reaches our one-line check
@click.argument("queue", required=False)
@click.argument("per_minute", required=False)
@click.option("--off", is_flag=True, help="No limit on QUEUE (overrides the configuration).")
@click.option("--reset", is_flag=True, help="Drop the run-time override; the configured limit applies again.")
@click.option("--json", "as_json", is_flag=True, help="Print the limits as JSON.")
@pass_ctx
@friendly
def limit(ctx: Context, queue: str | None, per_minute: str | None, off: bool, reset: bool, as_json: bool) -> None:
    """Show or change per-queue rate limits (jobs per minute), live on every worker.

    \b
    jobtui limit                  every queue's limit and its use in the last minute
    jobtui limit default 300      at most 300 jobs a minute on `default` (0 holds the queue)
    jobtui limit default --off    no limit on `default`
    jobtui limit default --reset  back to `[limits]` in the configuration
    """
    if queue is None:
        if per_minute or off or reset:
            fail("name the queue: jobtui limit QUEUE N | --off | --reset")
        with ctx.engine() as engine:
            _show_limits(engine, as_json)
        return
    chosen = sum([per_minute is not None, off, reset])
    if chosen != 1:
        fail(f"give exactly one of N, --off or --reset for queue {queue!r}, e.g. jobtui limit {queue} 300")
    amount: int | None = None
    if per_minute is not None:
        try:
            amount = v.parse_int(v.text(per_minute, "limit", max_len=40), "limit", 0, v.MAX_COUNT)
        except JobEngineError:
            fail(f"limit must be a whole number of jobs per minute from 0 to {v.MAX_COUNT:,}, "
                 f"got {v.show(per_minute)}")
    settings = ctx.settings()
    v.queue_name(queue, "queue", settings.known_queues)
    settings_guard(settings, "limit")

    with ctx.engine() as engine:
        if reset:
            dropped = engine.reset_limit(queue)
            configured = engine.settings.limits.get(queue)
            now = f"{configured}/min (configured)" if configured is not None else "unlimited (configured)"
            click.echo(f"{queue}: {'override dropped' if dropped else 'no override was set'}; now {now}")
        else:
            engine.set_limit(queue, None if off else amount)
            click.echo(f"{queue}: {'unlimited' if off else f'{amount}/min'} on every worker from its next job")


def _show_limits(engine: Any, as_json: bool) -> None:
    from jobengine.ratelimit import RedisWindowStorage

    rows = engine.limits()
    with engine.connection.pipeline(transaction=False) as pipe:
        for row in rows:
            RedisWindowStorage.queue_usage(pipe, row.queue, time.time())
        used = pipe.execute()

    def text(value: Any) -> str:
        return "-" if value is None else str(value)

    table = [{"queue": r.queue, "configured": r.configured.amount if r.configured else None,
              "override": ("off" if r.override is None else r.override.amount) if r.override_set else None,
              "effective": r.effective.amount if r.effective else None,
              "used_last_minute": int(n) if r.effective else None} for r, n in zip(rows, used, strict=True)]
    if as_json:
        click.echo(json.dumps(table))
        return
    click.echo(f"{'queue':14} {'configured':>10} {'override':>9} {'effective':>10} {'used/60s':>9}")
    for r in table:
        effective = "unlimited" if r["effective"] is None else f"{r['effective']}/min"
        click.echo(f"{r['queue']:14} {text(r['configured']):>10} {text(r['override']):>9} {effective:>10} "
                   f"{text(r['used_last_minute']):>9}")


# ---- metrics --------------------------------------------------------------------------------------

@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9464, show_default=True, help="HTTP port.")
@click.option("--addr", default="0.0.0.0", show_default=True, callback=checked("text", max_len=255),
              help="Address to listen on.")
@click.option("--once", is_flag=True, help="Print one scrape (Prometheus text format) and exit.")
@click.option("--rules", is_flag=True, help="Print the Prometheus alert rules (with this configuration's thresholds).")
@click.option("--grafana", is_flag=True, help="Print the Grafana dashboard (JSON) over the exported series.")
@pass_ctx
@friendly
def metrics(ctx: Context, port: int, addr: str, once: bool, rules: bool, grafana: bool) -> None:
    """Export queue sizes and job counters of the whole deployment to Prometheus (/metrics).

    Every scrape reads a handful of Redis keys, never PostgreSQL. `--rules` and `--grafana` print
    the shipped alert rules and dashboard and touch no server.
    """
    from jobengine.exporter import serve

    if rules or grafana:
        from jobengine.monitoring import grafana_json, rules_text

        click.echo(rules_text(ctx.settings()) if rules else grafana_json(), nl=False)
        return
    with ctx.engine() as engine:
        if once:
            click.echo(engine.metrics_text(), nl=False)
            return
        try:
            server = serve(engine.connection, engine.settings, port, addr)
        except OSError as exc:
            fail(f"cannot listen on {addr}:{port}: {exc.strerror}")
        click.echo(f"serving Prometheus metrics on http://{addr}:{port}/metrics", err=True)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.shutdown()


# ---- prune ----------------------------------------------------------------------------------------

@click.command()
@click.option("--older-than", default=describe_duration(DEFAULT_OLDER_THAN), show_default=True,
              help="Delete history that ended longer ago than this (90s, 15m, 12h, 7d, 2w).")
@click.option("--keep-failed", help="Keep failed jobs this long instead (e.g. 30d).")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=5000, show_default=True,
              help="Rows per delete transaction.")
@pass_ctx
@friendly
def prune(ctx: Context, older_than: str, keep_failed: str | None, dry_run: bool, batch_size: int) -> None:
    """Delete finished history, old logs and RQ's finished jobs, in batches."""
    from jobengine.prune import exclusive

    age = duration(older_than, "--older-than")
    keep = duration(keep_failed, "--keep-failed")
    assert age is not None
    if not dry_run:
        settings_guard(ctx.settings(), "prune")  # before the lock is taken: read-only writes nothing
    with ctx.engine() as engine:
        pruner = engine.pruner()
        with exclusive(engine.connection, timeout=3600, wait=0 if dry_run else 10) as mine:
            if not mine and not dry_run:
                fail("another process is pruning (its Redis lock is held); try again when it is done")
            if sys.stderr.isatty() and not dry_run:
                report = _with_progress(pruner, age, keep, batch_size)
            else:
                report = pruner.run(age, keep, dry_run=dry_run, batch_size=batch_size)
        for line in report.lines():
            click.echo(line)


def _with_progress(pruner: Any, age: float, keep: float | None, batch_size: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = pruner.count(age, keep)
    columns = (TextColumn("pruning history"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("prune", total=total or None)
        return pruner.run(age, keep, batch_size=batch_size,
                          progress=lambda done: progress.update(task, completed=min(done, total)))


# ---- stats ----------------------------------------------------------------------------------------

@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--fresh", is_flag=True, help="Recompute the history counts (cached for cache.stats seconds).")
@pass_ctx
@friendly
def stats(ctx: Context, as_json: bool, fresh: bool) -> None:
    """Queues right now (the shared snapshot) and job counts over the whole history (cached)."""
    with ctx.engine() as engine:
        snap = engine.snapshot()
        history = engine.stats(fresh=fresh)
        queues = [{"queue": q.name, "size": q.size, "scheduled": q.scheduled, "running": q.running,
                   "failed": q.failed, "oldest_wait": q.oldest_wait,
                   "processed_last_minute": q.processed_per_minute[-2] if len(q.processed_per_minute) > 1 else 0,
                   "processed_last_hour": sum(q.processed_per_minute),
                   "failed_last_hour": sum(q.failed_per_minute), "rate_limit": q.rate_limit,
                   "rate_used": q.rate_used, "size_threshold": q.size_threshold, "over_threshold": q.over_threshold}
                  for q in snap.queues]
    if as_json:
        click.echo(json.dumps({"taken_at": snap.taken_at.isoformat(), "verdict": snap.health.verdict,
                               "queues": queues, "workers": len(snap.workers), "history": history,
                               "errors": [f"{o.component}: {o.message}" for o in snap.outages]}))
        return
    _print_stats(snap, queues, history)


def counted_when(computed_at: str, now: datetime) -> str:
    """'counted 14:03:12 UTC, 42 s ago (cached; --fresh recounts)': how old the cached counts are."""
    at = datetime.fromisoformat(computed_at)
    age = max(0.0, (now - at).total_seconds())
    ago = f"{age:.0f} s ago" if age < 120 else f"{age / 60:.0f} min ago" if age < 7200 else f"{age / 3600:.0f} h ago"
    return f"counted {at:%H:%M:%S} UTC, {ago if age >= 1 else 'just now'} (cached; --fresh recounts)"


def _print_stats(snap: Any, queues: list[dict[str, Any]], history: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    table = Table(title=f"Queues at {snap.taken_at:%H:%M:%S} UTC: {snap.health.verdict}, "
                        f"{len(snap.workers)} worker(s)")
    for name in ("queue", "size", "sched", "running", "failed", "oldest wait", "done/min", "done/h", "failed/h",
                 "limit"):
        table.add_column(name, justify="left" if name == "queue" else "right")
    for q in queues:
        wait = "-" if q["oldest_wait"] is None else f"{q['oldest_wait']:.0f}s"
        limit = "-" if q["rate_limit"] is None else f"{q['rate_used']}/{q['rate_limit']}"
        name = q["queue"] + (" (over threshold)" if q["over_threshold"] else "")
        table.add_row(name, f"{q['size']:,}", f"{q['scheduled']:,}", f"{q['running']:,}", f"{q['failed']:,}", wait,
                      f"{q['processed_last_minute']:,}", f"{q['processed_last_hour']:,}",
                      f"{q['failed_last_hour']:,}", limit)
    console.print(table)
    by_status = ", ".join(f"{s} {n:,}" for s, n in sorted(history["by_status"].items())) or "none"
    console.print(f"History ({history['total']:,} jobs, {counted_when(history['computed_at'], datetime.now(UTC))}): "
                  f"{by_status}")
    top = sorted(history["by_type"].items(), key=lambda kv: -sum(kv[1].values()))[:10]
    for job_type, counts in top:
        console.print(f"  {job_type}: " + ", ".join(f"{s} {n:,}" for s, n in sorted(counts.items())))
    for outage in snap.outages:
        console.print(f"{outage.component}: {outage.message}", style="bold red", markup=False)


COMMANDS = (health, migrate, limit, metrics, prune, stats)
