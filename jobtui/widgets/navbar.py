"""The screen switcher line: '1 Dashboard  2 Failed 120  3 Stuck 2  4 Job', current one lit."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from jobtui.format import count

SCREENS: tuple[tuple[str, str, str], ...] = (
    ("1", "dashboard", "Dashboard"),
    ("2", "failed", "Failed"),
    ("3", "stuck", "Stuck"),
    ("4", "job", "Job"),
)


class NavBar(Static):
    """Render only: the caller passes the current screen and the counts to show."""

    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $foreground-muted; padding: 0 0; }
    """

    def show(self, current: str, failed: int | None, stuck: int | None, note: str = "") -> None:
        counts = {"failed": failed, "stuck": stuck}
        parts: list[Content | tuple[str, str] | str] = []
        for key, mode, label in SCREENS:
            n = counts.get(mode)
            badge = f" {count(n)}" if n else ""
            text = f" {key} {label}{badge} "
            if mode == current:
                parts.append((text, "bold $text-accent on $surface"))
            else:
                style = f"@click=app.show('{mode}')"
                if mode == "failed" and n:
                    style += " $text-error"
                parts.append((text, style))
        if note:
            parts.append(("  " + note, "italic"))
        self.update(Content.assemble(*parts))
