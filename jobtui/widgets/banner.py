"""The outage banner: says what is down and how old the data on screen is."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class Banner(Static):
    """Hidden while everything answers; red for an outage, amber for a partial one."""

    DEFAULT_CSS = """
    Banner {
        display: none;
        height: auto;
        padding: 0 1;
        text-style: bold;
        &.-down { display: block; background: $error; color: $text; }
        &.-partial { display: block; background: $warning; color: $text; }
    }
    """

    def show_message(self, message: str | None, level: str = "down") -> None:
        """Show `message` ('down' or 'partial'), or hide the banner for None."""
        self.set_class(message is not None and level == "down", "-down")
        self.set_class(message is not None and level == "partial", "-partial")
        self.update(Content("⚠ " + message) if message else "")
