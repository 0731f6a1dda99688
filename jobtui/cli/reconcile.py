"""`jobtui reconcile`: put back the jobs PostgreSQL holds in flight that Redis no longer has."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click

from jobtui.cli.context import Context, friendly, pass_ctx, settings_guard


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be restored; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
@friendly
def reconcile(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Recover dead workers' jobs, and re-create lost jobs after Redis lost its data (same ids,
    each exactly once, audited).

    First the recovery every live worker runs: the jobs of workers that died go back to their
    queues (the job one was running follows `[retry.abandoned]`). Then queued and processing jobs
    Redis lost go back on their queue, scheduled ones into the scheduled registry at their due
    time. Jobs canceled (or ended) through RQ's own API while PostgreSQL holds them in flight get
    that end recorded in their history. Exit 0 when the reset is reconciled (or nothing was
    lost), 1 when jobs are left for a later run (too recent, history still pending), 2 when a
    server cannot be reached. Workers run the same reconcile by themselves after a detected reset.
    """
    if not dry_run:
        settings_guard(ctx.settings(), "reconcile")
    with ctx.engine() as engine:
        recovered = None
        if not dry_run:
            from jobengine.runtime.recovery import recover

            recovered = recover(engine.connection, engine.settings, engine.policy)
        reconciler = engine.reconciler()
        status = reconciler.detect_reset(bootstrap=not dry_run)
        report = _run(reconciler, dry_run, quiet=as_json)
    left = report.recent + report.pending_history
    data: dict[str, Any] = {"reset_detected": status.reset, **asdict(report),
                            "restored_total": report.restored_total, "recorded_total": report.recorded_total,
                            "recovery": asdict(recovered) if recovered is not None else None}
    if as_json:
        click.echo(json.dumps(data, default=str))
    else:
        if recovered is not None and recovered.workers:
            click.echo(f"recovered {len(recovered.workers)} dead worker(s): {recovered.requeued} job(s) back on "
                       f"their queue, {recovered.retried} retried and {recovered.failed} failed as abandoned")
        verb = "would restore" if dry_run else "restored"
        click.echo(f"Redis reset detected: {'yes' if status.reset else 'no'}")
        click.echo(f"{verb} {report.restored_total} job(s) of {report.examined} in flight "
                   f"({report.summary()})")
        if report.not_restorable:
            click.echo(f"{report.not_restorable} lost job(s) carry no payload (dispatched while PostgreSQL was "
                       "down, or by a plain RQ client) and cannot be restored")
        if report.stale:
            click.echo(f"{len(report.stale)} job(s) ended in Redis but not yet in the history: "
                       + ", ".join(report.stale[:10]) + (" …" if len(report.stale) > 10 else ""))
        if report.recorded:
            outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.recorded.items()))
            rest = len(report.stale) - report.recorded_total
            click.echo(f"{'would record' if dry_run else 'recorded'} the end RQ shows of {report.recorded_total} "
                       f"of them ({outcomes}: ended through RQ, not by jobtui)"
                       + (f"; {rest} wait (history on its way, or ended moments ago)" if rest > 0 else ""))
        if left and not dry_run:
            click.echo(f"{left} job(s) too recent or with history pending: run again in a minute")
    sys.exit(1 if left and not dry_run else 0)


def _run(reconciler: Any, dry_run: bool, quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return reconciler.run(dry_run=dry_run)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("reconcile"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reconcile", total=None)
        return reconciler.run(dry_run=dry_run,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))


COMMANDS = (reconcile,)
