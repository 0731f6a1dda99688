"""Theme-aware colours for Rich text in table cells (which cannot use CSS variables).

The `text-*` variables are the theme's colours meant for text on its background, so cells
stay readable in both textual-dark and textual-light.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import App
from textual.color import Color


@dataclass(frozen=True)
class Palette:
    error: str
    warning: str
    success: str
    accent: str
    muted: str
    primary: str


def palette(app: App[object]) -> Palette:
    """The current theme's colours as Rich colour strings."""
    v = app.theme_variables

    background = Color.parse(v.get("background", "#000000"))

    def pick(name: str, fallback: str) -> str:
        try:
            return (background + Color.parse(v.get(name, fallback))).hex6
        except Exception:  # a variable like "auto 60%" is not a plain colour
            return fallback

    return Palette(
        error=pick("text-error", "#d17e92"),
        warning=pick("text-warning", "#ffc473"),
        success=pick("text-success", "#8ad4a1"),
        accent=pick("text-accent", "#ffc473"),
        muted=pick("foreground-muted", "#888888"),
        primary=pick("text-primary", "#57a5e2"),
    )
