"""Steering commands: `pause`, `resume`, `retry`, `cancel` (by id or by typed filter).

Like every command, bad input is one line on stderr and exit code 2; read-only refuses them
before any server starts (a `--dry-run` only counts, so it is allowed).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from jobengine import validate as v
from jobtui.cli.context import Context, checked, fail, friendly, pass_ctx, settings_guard

FILTER_HELP = ("Typed search: type:A,B queue:Q since:1h error:X args:X id:PREFIX and free text "
               "(as the console's failed list filters).")


@click.command()
@click.argument("queue")
@click.option("--reason", callback=checked("text", max_len=v.MAX_TEXT), help="Why (shown on the dashboard).")
@pass_ctx
@friendly
def pause(ctx: Context, queue: str, reason: str | None) -> None:
    """Pause QUEUE on every worker within a second: its jobs stay queued, dispatch still enqueues."""
    settings = ctx.settings()
    v.queue_name(queue, "queue", settings.known_queues)
    settings_guard(settings, "pause")
    with ctx.engine() as engine:
        done = engine.pause(queue, reason)
        info = engine.paused_queues().get(queue)
    by = f" by {info.by} since {info.since:%Y-%m-%d %H:%M:%S} UTC" if info is not None else ""
    click.echo(f"{queue}: paused{by}" if done else f"{queue}: already paused{by}")


@click.command()
@click.argument("queue")
@pass_ctx
@friendly
def resume(ctx: Context, queue: str) -> None:
    """Resume QUEUE: workers take its jobs again within a second."""
    settings = ctx.settings()
    v.queue_name(queue, "queue", settings.known_queues)
    settings_guard(settings, "resume")
    with ctx.engine() as engine:
        done = engine.resume(queue)
    click.echo(f"{queue}: resumed" if done else f"{queue}: was not paused")


def _bulk(ctx: Context, kind: str, ids: tuple[str, ...], search: str | None, dry_run: bool,
          limit: int | None, as_json: bool) -> None:
    if bool(ids) == (search is not None):
        fail(f"give job ids or --filter, not both (jobtui {kind} ID... | jobtui {kind} --filter 'type:email')")
    if search is not None:
        from jobengine.bulk import check
        from jobengine.query import parse_query

        check(kind, parse_query(search))  # a bad filter fails before any server starts
    for job_id in ids:
        v.job_id(job_id)
    if not dry_run:
        settings_guard(ctx.settings(), kind)
    with ctx.engine() as engine:
        if search is None:
            call = engine.retry if kind == "retry" else engine.cancel
            done = [job_id for job_id in ids if call(job_id)]
            result: dict[str, Any] = {"done": len(done), "of": len(ids), "ids": done}
            line = f"{len(done)} of {len(ids)} job(s) {'retried' if kind == 'retry' else 'canceled'}"
        else:
            progress = _progress(kind) if sys.stderr.isatty() and not dry_run and not as_json else None
            with progress or _Nothing() as bar:
                outcome = engine.bulk(kind, search, cap=limit, dry_run=dry_run,
                                      progress=bar.update if progress else None)
            result = {"matched": outcome.matched, "done": outcome.done, "skipped": outcome.skipped,
                      "cap": outcome.cap, "capped": outcome.capped, "dry_run": dry_run, "filter": search}
            line = outcome.line()
    click.echo(json.dumps(result) if as_json else line)


class _Nothing:
    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, done: int, total: int) -> None:  # pragma: no cover - never called
        return None


class _progress:  # noqa: N801 - used like a function
    """A rich progress bar on stderr for a bulk action."""

    def __init__(self, kind: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn(f"{kind} by filter"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task(kind, total=None)

    def __enter__(self) -> _progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)


_OPTIONS = (
    click.argument("ids", nargs=-1),
    click.option("--filter", "search", callback=checked("text", max_len=v.MAX_TEXT), help=FILTER_HELP),
    click.option("--dry-run", is_flag=True, help="Only count what the filter matches."),
    click.option("--limit", callback=checked("int", 1, 1_000_000),
                 help="At most this many jobs (default: [console] bulk_cap, 10000)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
)


def _with_options(fn: Any) -> Any:
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


@click.command()
@_with_options
@pass_ctx
@friendly
def retry(ctx: Context, ids: tuple[str, ...], search: str | None, dry_run: bool, limit: int | None,
          as_json: bool) -> None:
    """Retry failed jobs: by IDS, or every open failure matching --filter (in batches of 1,000,
    audited as one action)."""
    _bulk(ctx, "retry", ids, search, dry_run, limit, as_json)


@click.command()
@_with_options
@pass_ctx
@friendly
def cancel(ctx: Context, ids: tuple[str, ...], search: str | None, dry_run: bool, limit: int | None,
           as_json: bool) -> None:
    """Cancel queued or scheduled jobs and stop running ones: by IDS, or every such job matching
    --filter (as history knows them; in batches of 1,000, audited as one action)."""
    _bulk(ctx, "cancel", ids, search, dry_run, limit, as_json)


COMMANDS = (pause, resume, retry, cancel)
