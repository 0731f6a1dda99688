"""`jobtui alerts`: send a test notice, run one round (cron), list the notices sent and the alerts active.

URLs are shown masked (scheme and host) everywhere: they hold tokens and passwords.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from jobtui.cli.context import Context, Group, fail, friendly, pass_ctx

if TYPE_CHECKING:
    from jobengine.alerts import AlertRecord
    from jobengine.engine import Engine

NO_URL = ("no alert URL is configured: set [alerts] urls in the configuration or JOBENGINE_ALERT_URLS "
          "(apprise URLs, e.g. json://host/path, slack://..., mailto://...)")


@click.group(cls=Group)
def alerts() -> None:
    """Notifications through apprise: health, failure bursts, stuck jobs, long waits, dead letters."""


def _configured(engine: Engine) -> Any:
    if not engine.settings.alert_urls:
        fail(NO_URL)
    alerter = engine.alerter()
    alerter.notifier  # noqa: B018 - a ${VAR} not set: one line naming it, exit 2
    return alerter


@alerts.command("test")
@pass_ctx
@friendly
def test(ctx: Context) -> None:
    """Send one test notice to every configured URL: exit 0 when each accepted it, 1 when one did
    not, 2 when no URL is configured."""
    with ctx.engine(migrate=False) as engine:
        alerter = _configured(engine)
        rec = alerter.send_test()
    for target in rec.delivered:
        click.echo(f"sent to {target}")
    for target in rec.failed:
        click.echo(f"NOT delivered to {target}", err=True)
    if not rec.ok:
        sys.exit(1)


@alerts.command("run-once")
@click.option("--json", "as_json", is_flag=True, help="Print what the round did as JSON.")
@pass_ctx
@friendly
def run_once(ctx: Context, as_json: bool) -> None:
    """Evaluate the alerts now and send what changed (for cron; workers do it every
    `[alerts] check_every` seconds). Exit 1 when another process holds the alerts lock."""
    with ctx.engine() as engine:
        alerter = _configured(engine)
        report = alerter.run_once(force=True)
    if report is None:
        click.echo("another process is evaluating the alerts now: skipped", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"active": list(report.active), "suppressed": list(report.suppressed),
                               "sent": [r.as_dict() for r in report.sent]}))
        return
    for rec in report.sent:
        click.echo(_line(rec))
    click.echo(f"{len(report.sent)} notice(s) sent; {len(report.active)} alert(s) active"
               + (f", {len(report.suppressed)} waiting for [alerts] interval" if report.suppressed else ""))


@alerts.command("recent")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Most notices listed.")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@pass_ctx
@friendly
def recent(ctx: Context, limit: int, as_json: bool) -> None:
    """The last notices sent (or tried), newest first, and the alerts active now."""
    with ctx.engine(migrate=False) as engine:
        records = engine.recent_alerts(limit)
        active = engine.alerter().active()
    if as_json:
        click.echo(json.dumps({"recent": [r.as_dict() for r in records],
                               "active": {k: {"event": s.event, "title": s.title, "notified": s.notified,
                                              "since": _iso(s.since)} for k, s in sorted(active.items())}}))
        return
    if not records:
        click.echo("no alert notice sent yet")
    for rec in records:
        click.echo(_line(rec))
    if active:
        click.echo(f"active now: {', '.join(sorted(active))}")


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _line(rec: AlertRecord) -> str:
    where = ", ".join(rec.delivered) or "no target"
    failed = f" (NOT delivered to {', '.join(rec.failed)})" if rec.failed else ""
    return f"{rec.at:%Y-%m-%d %H:%M:%S}  {rec.status:<8}  {rec.title}  -> {where}{failed}"


COMMANDS = (alerts,)
