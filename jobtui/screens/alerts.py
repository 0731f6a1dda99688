"""Alerts: the last notices the engine sent (or tried to), newest first, and their delivery.

The rows come with every poll (`PollExtras.alerts`, see jobtui.poller); the pane under the
table shows the highlighted notice's body, alert keys and targets; enter moves into it.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from jobengine.alerts.state import AlertRecord
from jobtui.actions import ALL, bindings_for
from jobtui.format import absolute, counted, relative
from jobtui.messages import ViewState
from jobtui.screens.base import BaseScreen
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Column, KeyedTable, Row

COLUMNS = (
    Column("time", "Time"),
    Column("status", "Status"),
    Column("event", "Event", priority=2, min_width=8),
    Column("title", "Title", flex=True, min_width=16),
    Column("delivery", "Delivery", priority=1),
)
EMPTY = "No alerts sent yet; configure [alerts] urls, see README Alerts"
SETUP = {
    "no urls": "Alerts are not configured: no [alerts] urls (nor JOBENGINE_ALERT_URLS), so nothing is sent.",
    "disabled": "Alerts are disabled ([alerts] enabled = false): workers send nothing.",
}


def status_style(rec: AlertRecord, colors: Palette) -> str:
    """Like the health bar: red for a failing alert, amber for a warning, green once resolved."""
    if rec.status == "resolved":
        return f"bold {colors.success}"
    if rec.status == "firing":
        return f"bold {colors.error if rec.level == 'failure' else colors.warning}"
    return f"bold {colors.primary}"


def delivery_text(rec: AlertRecord, colors: Palette) -> Text:
    """'✓ sent', '✗ failed' (no target took it), '✗ 1 of 2' (some did not), '✗ no target'."""
    if rec.ok:
        return Text("✓ sent", style=colors.success)
    if rec.delivered:
        total = len(rec.delivered) + len(rec.failed)
        return Text(f"✗ {len(rec.failed)} of {total}", style=f"bold {colors.error}")
    if rec.failed:
        return Text("✗ failed", style=f"bold {colors.error}")
    return Text("✗ no target", style=f"bold {colors.warning}")


def row_keys(records: list[AlertRecord]) -> list[str]:
    """A stable key per notice (records carry no id): time, status and keys, made unique."""
    seen: dict[str, int] = {}
    out = []
    for rec in records:
        base = f"{rec.at.isoformat()}|{rec.status}|{rec.event}|{','.join(rec.keys)}|{rec.title}"
        n = seen[base] = seen.get(base, 0) + 1
        out.append(base if n == 1 else f"{base}#{n}")
    return out


def render_alert(rec: AlertRecord, screen: BaseScreen) -> RenderableType:
    """The detail pane: status and title, the facts, the targets, then the full body."""
    colors, now, tz = screen.theme_palette, screen.now, screen.tz
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column()
    facts.add_row("sent", Text(f"{absolute(rec.at, tz)} ({relative(rec.at, now)})"))
    facts.add_row("event", Text(f"{rec.event} · level {rec.level}"))
    facts.add_row("alert keys", Text("\n".join(rec.keys) or "—"))
    facts.add_row("delivered to", Text(", ".join(rec.delivered) or "no target", style=colors.success
                                       if rec.delivered else f"bold {colors.error}"))
    if rec.failed:
        facts.add_row("NOT delivered", Text(", ".join(rec.failed), style=f"bold {colors.error}"))
    head = Text.assemble((f"● {rec.status.upper()}", status_style(rec, colors)), "  ", (rec.title, "bold"))
    return Group(head, facts, Text("── Body", style=f"bold {colors.accent}"), Text(rec.body or "(empty)"))


class AlertDetailView(VerticalScroll, can_focus=True):
    """The highlighted notice, or a line of text."""

    DEFAULT_CSS = """
    AlertDetailView { padding: 0 1; }
    AlertDetailView > Static { width: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="alert-body")

    def show(self, renderable: RenderableType) -> None:
        self.query_one("#alert-body", Static).update(renderable)


class AlertsScreen(BaseScreen):
    """The notices table, newest first; `/` filters it, enter reads the highlighted one."""

    MODE = "alerts"
    TITLE = "Alerts"
    AUTO_FOCUS = "#alerts-table"
    CSS_PATH = "alerts.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)
    FILTER_PLACEHOLDER = "filter: title, event, status, alert key or body — enter applies, esc clears"

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, AlertRecord] = {}
        self._shown_key: str | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="alerts-main"):
            yield Static(id="alerts-status")
            yield KeyedTable(id="alerts-table")
            yield Static(id="alerts-hint")
        yield AlertDetailView(id="alerts-detail")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#alerts-table", KeyedTable)

    @property
    def detail(self) -> AlertDetailView:
        return self.query_one(AlertDetailView)

    def focus_main(self) -> None:
        self.table.focus()

    def render_body(self, state: ViewState) -> None:
        extras = state.extras
        records = list(extras.alerts or ())
        needle = self.needle.lower()
        shown = [
            (key, r) for key, r in zip(row_keys(records), records, strict=True)
            if not needle or any(needle in v.lower() for v in (r.title, r.event, r.status, r.body, *r.keys))
        ]
        self.records = dict(shown)
        self.set_class(extras.alerts_error is not None, "-unread")
        self.table.set_columns(COLUMNS)
        self.table.sync(self._rows(shown))
        # Text, not a str: Static reads a str as markup, and "[alerts]" as a tag
        self.query_one("#alerts-status", Static).update(Text(self._status(state, records, len(shown))))
        self._render_hint()

    def _status(self, state: ViewState, records: list[AlertRecord], shown: int) -> str:
        extras = state.extras
        if extras.alerts is None:
            if extras.alerts_error:
                return f"alerts cannot be read: {extras.alerts_error}"
            return "waiting for the first poll…"
        if not records:
            return SETUP.get(self.jobapp.alerts_setup or "", EMPTY)
        firing = extras.firing or 0
        parts = [counted(len(records), "notice") + ", newest first",
                 f"{counted(firing, 'alert')} firing" if firing else "none firing"]
        if self.needle:
            parts.append(f"{shown} match the filter")
        failed = sum(1 for r in records if not r.ok)
        if failed:
            parts.append(f"{failed} not delivered everywhere")
        if extras.alerts_error:  # first: the line may be cut at the right
            parts.insert(0, f"not refreshed: {extras.alerts_error}")
        if self.jobapp.alerts_setup in SETUP:
            parts.append(SETUP[self.jobapp.alerts_setup or ""])
        return " · ".join(parts)

    def _rows(self, shown: list[tuple[str, AlertRecord]]) -> list[Row]:
        now, colors = self.now, self.theme_palette
        rows: list[Row] = []
        for key, r in shown:
            cells = {
                "time": Text(relative(r.at, now, compact=True)),
                "status": Text(f"● {r.status}", style=status_style(r, colors)),
                "event": Text(r.event),
                "title": Text(r.title),
                "delivery": delivery_text(r, colors),
            }
            rows.append((key, [cells[c.key] for c in COLUMNS]))
        return rows

    def _render_hint(self) -> None:
        key = self.table.cursor_key
        rec = self.records.get(key or "")
        hint = self.query_one("#alerts-hint", Static)
        if rec is None:
            hint.update(Text())
            self.detail.show(Text("Highlight a notice to read it." if self.records else "", style="dim"))
            self._shown_key = None
            return
        hint.update(Text(f"{absolute(rec.at, self.tz)} · {', '.join(rec.keys) or rec.event} · enter reads it"))
        self.detail.show(render_alert(rec, self))  # every time: its "ago" and the theme's colours
        if key != self._shown_key:
            self._shown_key = key
            self.detail.scroll_home(animate=False)

    @on(DataTable.RowHighlighted, "#alerts-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._render_hint()

    @on(DataTable.RowSelected, "#alerts-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        if self.table.cursor_key in self.records:
            self.detail.focus()

    def back(self) -> None:
        if self.detail.has_focus:
            self.table.focus()
