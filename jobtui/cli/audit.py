"""`jobtui audit [--since 1d] [--job ID] [--json]`: the operators' actions, newest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click

from jobengine import validate as v
from jobtui.cli.context import Context, checked, duration, friendly, pass_ctx


@click.command()
@click.option("--since", default="1d", show_default=True, help="How far back (90s, 15m, 12h, 7d, 2w).")
@click.option("--job", "job_id", callback=checked("text", max_len=v.MAX_JOB_ID), help="Only the rows of this job.")
@click.option("--limit", default=1000, show_default=True, callback=checked("int", 1, 100_000),
              help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON (one array).")
@pass_ctx
@friendly
def audit(ctx: Context, since: str, job_id: str | None, limit: int, as_json: bool) -> None:
    """Every operator action (dispatch, retry, cancel, limit, prune, bulk retries) with who and where."""
    age = duration(since, "--since")
    assert age is not None
    if job_id is not None:
        v.job_id(job_id, "--job")
    with ctx.engine() as engine:
        if job_id is not None:
            rows = list(reversed(engine.audit_for_job(job_id, limit=limit)))
        else:
            rows = engine.audit_entries(since=datetime.now(UTC) - timedelta(seconds=age), limit=limit)
    if as_json:
        click.echo(json.dumps([{**r, "at": r["at"].isoformat()} for r in rows]))
        return
    if not rows:
        click.echo(f"no audit rows {'for job ' + job_id if job_id else 'in the last ' + since}")
        return
    for r in rows:
        who = f"{r['os_user'] or '?'}@{r['host'] or '?'}"
        target = r["job_id"] or "-"
        click.echo(f"{r['at']:%Y-%m-%d %H:%M:%S} {r['action']:<15} {target:<36} {who:<24} {r['detail'] or ''}".rstrip())


COMMANDS = (audit,)
