"""The screen switcher line: '1 Dashboard  2 Failed 120  3 Stuck 2  4 Job  5 Alerts 1', current one lit."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from jobtui.format import count

SCREENS: tuple[tuple[str, str, str], ...] = (
    ("1", "dashboard", "Dashboard"),
    ("2", "failed", "Failed"),
    ("3", "stuck", "Stuck"),
    ("4", "job", "Job"),
    ("5", "alerts", "Alerts"),
)


class NavBar(Static):
    """Render only: the caller passes the current screen and the counts to show."""

    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $foreground-muted; padding: 0 0; }
    """

    def show(self, current: str, failed: int | None, stuck: int | None, note: str = "", *,
             firing: int | None = None) -> None:
        """`firing`: the alerts firing now (the Alerts screen's badge, in the error colour)."""
        counts = {"failed": failed, "stuck": stuck, "alerts": firing}
        parts: list[Content | tuple[str, str] | str] = []
        for key, mode, label in SCREENS:
            n = counts.get(mode)
            badge = f" {count(n)}" if n else ""
            text = f" {key} {label}{badge} "
            if mode == current:
                parts.append((text, "bold $text-accent on $surface"))
            else:
                style = f"@click=app.show('{mode}')"
                if mode in ("failed", "alerts") and n:
                    style += " $text-error"
                parts.append((text, style))
        if note:
            parts.append(("  " + note, "italic"))
        self.update(Content.assemble(*parts))
