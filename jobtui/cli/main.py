"""The `jobtui` group: global options, the console (the default command), and every command group."""

from __future__ import annotations

import click

from jobtui.cli import alerts, audit, demo, history, jobs, ops, reconcile, serve, steer, worker
from jobtui.cli.context import Context, Group, checked, configure_logging, friendly, global_options, pass_ctx


@click.group(cls=Group, invoke_without_command=True)
@global_options
@click.version_option(package_name="jobtui")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """jobtui: priority job queues on RQ, Redis and PostgreSQL, and a console to steer them.

    With no command, opens the console. The global options work before or after the command.
    """
    configure_logging(ctx.ensure_object(Context).verbose)
    if ctx.invoked_subcommand is None:
        ctx.invoke(console)


@click.command()
@click.option("--refresh", callback=checked("number", 0.1, 3600),
              help="Seconds between refreshes (0.1 to 3600, default 1).")
@pass_ctx
@friendly
def console(ctx: Context, refresh: float | None) -> None:
    """Open the console."""
    from jobtui.app import JobTUI

    with ctx.engine(refresh=refresh) as engine:
        JobTUI(engine, refresh=engine.settings.refresh, read_only=engine.read_only).run()


for _command in (console, *ops.COMMANDS, *jobs.COMMANDS, *worker.COMMANDS, *demo.COMMANDS, *audit.COMMANDS,
                 *history.COMMANDS, *reconcile.COMMANDS, *alerts.COMMANDS, *serve.COMMANDS, *steer.COMMANDS):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="jobtui")
