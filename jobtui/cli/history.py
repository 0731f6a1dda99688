"""`jobtui history dead-letters`: the history events PostgreSQL refused, listed, retried or dropped."""

from __future__ import annotations

import json

import click

from jobtui.cli.context import Context, Group, fail, friendly, pass_ctx, settings_guard


@click.group(cls=Group)
def history() -> None:
    """Job history: the events PostgreSQL refused as data (dead letters)."""


@history.command("dead-letters")
@click.argument("ids", nargs=-1)
@click.option("--retry", is_flag=True,
              help="Put them back on the events stream for the history writers (one audit line).")
@click.option("--drop", is_flag=True, help="Delete them (one audit line each).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Most letters listed.")
@click.option("--json", "as_json", is_flag=True, help="Print them (or the count handled) as JSON.")
@pass_ctx
@friendly
def dead_letters(ctx: Context, ids: tuple[str, ...], retry: bool, drop: bool, limit: int, as_json: bool) -> None:
    """List the events PostgreSQL refused (a NUL byte, a value out of range) with their error;
    `--retry` or `--drop` the IDS given, or all of them.

    The history writer parks such an event instead of retrying it forever, so the rest of the
    history keeps flowing. A retried letter that PostgreSQL still refuses comes back here.
    """
    from jobengine.history import deadletters

    if retry and drop:
        fail("--retry and --drop exclude each other")
    if retry or drop:
        settings_guard(ctx.settings(), deadletters.ACTION)  # before any server starts; the engine refuses too
    with ctx.engine(migrate=False) as engine:
        chosen = list(ids) or None
        if retry or drop:
            engine.ensure_schema()  # the audit rows
            n = engine.dead_letters().drop(chosen) if drop else engine.dead_letters().retry(chosen)
            verb = "dropped" if drop else "retried"
            if as_json:
                click.echo(json.dumps({verb: n, "left": deadletters.count(engine.connection)}))
            else:
                click.echo(f"{verb} {n} dead letter(s)" + (" (audited)" if retry or n else "")
                           + ("; the history writers take them again" if retry and n else ""))
            return
        letters = deadletters.dead_letters(engine.connection, limit=limit)
        total = deadletters.count(engine.connection)
    if as_json:
        click.echo(json.dumps({"total": total, "dead_letters": [d.as_dict() for d in letters]}))
        return
    if not letters:
        click.echo("no dead letters")
        return
    for d in letters:
        error = d.error if len(d.error) <= 160 else d.error[:159] + "…"
        click.echo(f"{d.id}  job {d.job_id[:40]}  {d.kind[:20]}  {error}")
    shown = f" ({len(letters)} shown)" if len(letters) < total else ""
    click.echo(f"{total} dead letter(s){shown}; --retry or --drop them (all, or the ids given)")


COMMANDS = (history,)
