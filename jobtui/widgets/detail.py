"""The job detail pane: arguments, attempts, retry strategy, traceback, log, absolute times."""

from __future__ import annotations

import json
import re
from datetime import datetime, tzinfo

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from jobengine.models import FailureGroup, JobDetail
from jobtui.format import DASH, absolute, clock_time, count, duration, relative
from jobtui.widgets.colors import Palette

_GIVES_DELAY = re.compile(r"\bin \d")
"""A log message that already says when ('retry 2 in 4.0s ...')."""
STATUS_COLOR = {
    "failed": "error",
    "stopped": "error",
    "canceled": "warning",
    "processing": "primary",
    "finished": "success",
}


def _when(value: datetime | None, now: datetime, tz: tzinfo | None) -> Text:
    if value is None:
        return Text(DASH)
    return Text.assemble(absolute(value, tz), (f"  ({relative(value, now)})", "dim"))


def _duration(took: float | None, started: datetime | None, finished: datetime | None, now: datetime) -> Text:
    if took is None and started is not None and finished is None:
        return Text.assemble(duration((now - started).total_seconds()), (" so far (still running)", "dim"))
    return Text(duration(took))


def _pretty_args(args: str | None) -> str:
    if not args:
        return DASH
    try:
        return json.dumps(json.loads(args), indent=2, sort_keys=True)
    except (ValueError, TypeError):
        return args


def _section(title: str, colors: Palette) -> Text:
    return Text(f"\n{title}", style=f"bold {colors.accent}")


def render_detail(detail: JobDetail, now: datetime, tz: tzinfo | None, colors: Palette) -> RenderableType:
    """The whole pane for one job, as one Rich renderable."""
    r = detail.record
    status = r.status.value
    color = getattr(colors, STATUS_COLOR.get(status, "muted"), colors.muted)
    head = Text.assemble((f"{r.type}", "bold"), "  ", (f" {status.upper()} ", f"bold reverse {color}"))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column()
    priority = r.priority.value if r.priority else DASH
    rows: list[tuple[str, Text | str]] = [
        ("id", Text(r.id)),
        ("queue", Text(f"{r.queue} · priority {priority}")),
        ("status", Text(status + (f" (rq: {detail.rq_status})" if detail.rq_status else ""))),
        ("attempts", Text(str(r.attempts))),
        ("function", Text(r.func or DASH)),
        ("worker", Text(r.worker or DASH)),
        ("created", _when(r.created_at, now, tz)),
        ("due", _when(detail.due_at, now, tz)),
        ("started", _when(r.started_at, now, tz)),
        ("finished", _when(r.finished_at, now, tz)),
        ("failed", _when(r.failed_at, now, tz)),
        ("duration", _duration(r.duration, r.started_at, r.finished_at, now)),
    ]
    for label, value in rows:
        if label in ("due", "finished", "failed") and (value.plain if isinstance(value, Text) else value) == DASH:
            continue
        facts.add_row(label, value)
    parts: list[RenderableType] = [head, facts]
    if detail.truncated:
        names = ", ".join(n.replace("_", " ") for n in detail.truncated)
        parts.append(Text(f"Long text cut to keep the console responsive: {names} (m loads more).",
                          style=f"bold {colors.warning}"))
    parts += [_section("Arguments", colors), Text(_pretty_args(r.args))]
    parts.append(_section("Retry", colors))
    if detail.retry_strategy is None:
        parts.append(Text("no retry strategy applied", style="dim"))
    else:
        nxt = duration(detail.next_delay) if detail.next_delay is not None else "no further retry"
        parts.append(Text.assemble("strategy ", (detail.retry_strategy, "bold"), " · next delay ", (nxt, "bold")))
    if detail.failure is not None:
        f = detail.failure
        parts.append(_section("Failure" if f.retried_at is None else "Last failure (retried)", colors))
        parts.append(Text.assemble((f.error_class, f"bold {colors.error}"), ": ", f.error_message))
        retried = f" · retried {absolute(f.retried_at, tz)}" if f.retried_at is not None else ""
        parts.append(Text(f"fingerprint {f.fingerprint} · failed {absolute(f.failed_at, tz)}{retried}", style="dim"))
    # The log (a few lines: every attempt, retry and delay) before the traceback (often dozens).
    parts.append(_section(f"Log ({len(detail.logs)})", colors))
    parts.append(_log(detail, tz, colors))
    if detail.failure is not None:
        parts.append(_section("Traceback", colors))
        parts.append(traceback_text(detail.failure.traceback))
    return Group(*parts)


def _log(detail: JobDetail, tz: tzinfo | None, colors: Palette) -> RenderableType:
    """The job's log: time, level, kind, attempt and message (plus the retry delay if the
    message does not give it)."""
    if not detail.logs:
        return Text("no log entries", style="dim")
    log = Table.grid(padding=(0, 1))
    for _ in range(4):
        log.add_column(no_wrap=True)
    log.add_column()
    for entry in detail.logs:
        level_color = {"error": colors.error, "warning": colors.warning}.get(entry.level, colors.muted)
        message = Text(entry.message)
        if entry.delay is not None and not _GIVES_DELAY.search(entry.message):
            message.append(f"  (retry in {duration(entry.delay)})", style="dim")
        log.add_row(
            Text(clock_time(entry.at, tz), style="dim"),
            Text(entry.level, style=level_color),
            Text(entry.kind),
            Text(f"#{entry.attempt}" if entry.attempt is not None else "", style="dim"),
            message,
        )
    return log


def traceback_text(traceback: str) -> Text:
    """The traceback with the frames of installed libraries and the standard library dimmed, so
    the job's own frames stand out (nothing is left out)."""
    out = Text()
    library = False
    for line in traceback.rstrip().splitlines():
        if line.lstrip().startswith('File "'):
            library = "/site-packages/" in line or "/lib/python" in line
        elif not line.startswith(" "):  # "Traceback (most recent call last):", the exception line
            library = False
        out.append(line + "\n", style="dim" if library else "")
    out.rstrip()
    return out


def render_group(group: FailureGroup, now: datetime, tz: tzinfo | None, colors: Palette) -> RenderableType:
    """The pane for a failure group."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column()
    facts.add_row("exception", Text(group.error_class, style=f"bold {colors.error}"))
    facts.add_row("fingerprint", Text(group.fingerprint))
    facts.add_row("failures", Text(count(group.count), style="bold"))
    facts.add_row("first seen", _when(group.first_seen, now, tz))
    facts.add_row("last seen", _when(group.last_seen, now, tz))
    return Group(
        Text("Failure group", style="bold"),
        facts,
        _section("Sample message", colors),
        Text(group.sample_message),
        Text("\nR retries the whole group · enter lists its failures", style="dim"),
    )


class JobDetailView(VerticalScroll, can_focus=True):
    """Render only: `show_detail`, `show_group` or `show_text`."""

    DEFAULT_CSS = """
    JobDetailView { padding: 0 1; }
    JobDetailView > Static { width: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text("Highlight a job to see its detail.", style="dim"), id="detail-body")

    def _set(self, renderable: RenderableType) -> None:
        self.query_one("#detail-body", Static).update(renderable)

    def show_detail(self, detail: JobDetail, now: datetime, tz: tzinfo | None, colors: Palette) -> None:
        self._set(render_detail(detail, now, tz, colors))

    def show_group(self, group: FailureGroup, now: datetime, tz: tzinfo | None, colors: Palette) -> None:
        self._set(render_group(group, now, tz, colors))

    def show_text(self, text: str, style: str = "dim") -> None:
        self._set(Text(text, style=style))
