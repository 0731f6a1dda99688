"""The footer: Textual's, less the keys the action table marks as optional when they do not fit."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from jobtui.actions import ACTIONS

OPTIONAL = frozenset(spec.action for spec in ACTIONS if spec.footer_optional)
"""Actions whose keys the footer leaves out when the line would overflow (they stay bound, and
are listed by `?` help and the palette)."""
PALETTE_WIDTH = 12


def key_width(key: FooterKey, compact: bool) -> int:
    """The cells a FooterKey takes: 'q Quit' plus Textual's padding (compact: a 1-cell gap)."""
    text = len(key.key_display or key.key) + len(key.description)
    return text + (2 if compact else 3)


class JobFooter(Footer):
    """`narrow` (set by the screen on resize) compacts the footer and drops the palette key."""

    def __init__(self, *, narrow: bool = False) -> None:
        super().__init__(compact=narrow, show_command_palette=not narrow)
        self.narrow = narrow

    def set_narrow(self, narrow: bool) -> None:
        """After a resize: restyle, and decide again which keys fit."""
        self.narrow = narrow
        self.compact = narrow
        self.show_command_palette = not narrow
        self.refresh(recompose=True)

    def compose(self) -> ComposeResult:
        widgets: list[Widget] = list(super().compose())
        keys = [w for w in widgets if isinstance(w, FooterKey) and not w.has_class("-command-palette")]
        room = self.app.size.width - (PALETTE_WIDTH if self.show_command_palette else 0)
        if sum(key_width(k, self.narrow) for k in keys) > room:
            widgets = [w for w in widgets if not (isinstance(w, FooterKey) and w.action in OPTIONAL)]
        yield from widgets
