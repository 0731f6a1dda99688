"""The `?` help screen, rendered from the action registry."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from jobtui.actions import bindings_for, help_sections, key_label


class HelpScreen(ModalScreen[None]):
    """Every key, grouped by where it works; read-only mode leaves the mutating ones out."""

    CSS_PATH = "help.tcss"
    BINDINGS = bindings_for("help")

    def __init__(self, current: str | None, *, read_only: bool, paused: bool) -> None:
        super().__init__()
        self.current = current
        self.read_only = read_only
        self.paused = paused

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog") as dialog:
            dialog.border_title = "Keys" + (" · read-only" if self.read_only else "")
            with VerticalScroll(id="help-scroll"):
                yield Static(self._table(), id="help-body")
        yield Footer()

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(style="dim")
        for n, (title, specs) in enumerate(help_sections(self.current, read_only=self.read_only,
                                                           paused=self.paused)):
            if n:
                table.add_row("", "", "")
            table.add_row("", Text(title, style="bold underline"), "")
            for spec in specs:
                # Text, not str: Rich would read a '[' in the registry's text as markup.
                table.add_row(Text(key_label(spec)), Text(spec.description), Text(spec.tooltip))
        return table

    def action_dismiss_dialog(self) -> None:
        self.dismiss(None)

    def on_key(self, event: events.Key) -> None:
        if event.key in ("question_mark", "q"):
            event.stop()
            self.dismiss(None)
